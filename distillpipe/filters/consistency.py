"""Self-consistency over a record's n ≥ 2 samples (Wang et al. 2022).

``answers`` mode extracts each sample's final answer (``filters/answers.py``),
takes the majority vote and keeps the record when the majority's share of the
samples reaches ``min`` (and it has at least ``min_votes``); a majority
response becomes ``selection.chosen``, and a sample that answered otherwise
``selection.rejected``. ``similarity`` mode, for free-form answers, keeps the
record when the mean pairwise similarity of its samples reaches ``min``:
ROUGE-L F (rouge-score) or the cosine of MiniLM embeddings; the most central
sample is chosen.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from distillpipe.filters.answers import extract_answer
from distillpipe.filters.base import (
    FilterOptions,
    Record,
    ThresholdFilter,
    ThresholdOptions,
    ThresholdSpec,
    Verdict,
)
from distillpipe.scoring.embeddings import embedding_modules


class ConsistencyOptions(ThresholdOptions):
    type: str = "consistency"
    mode: Literal["answers", "similarity"] = "answers"
    min: ThresholdSpec = Field(0.5, description="agreement (answers) or mean similarity")
    min_votes: int = Field(2, ge=1, description="answers: samples the majority needs")
    similarity: Literal["rouge-l", "embedding"] = "rouge-l"
    embedding_model: str | None = Field(None, description="default: the packaged MiniLM")

    def optional_modules(self) -> dict[str, str]:
        if self.mode == "similarity" and self.similarity == "embedding":
            return embedding_modules(self.embedding_model)
        return {}


class ConsistencyFilter(ThresholdFilter):
    type: ClassVar[str] = "consistency"
    Options = ConsistencyOptions
    options: ConsistencyOptions

    def __init__(self, options: FilterOptions, config: Any = None) -> None:
        super().__init__(options, config)
        self.metric = "agreement" if self.options.mode == "answers" else "similarity"
        self._rouge: Any = None
        self._embedder: Any = None

    def score(self, records: Sequence[Record]) -> list[Any]:
        texts = [[r.get("text") or "" for r in record.get("responses") or []] for record in records]
        if self.options.mode == "answers":
            return [self._vote(samples) for samples in texts]
        return [self._agreement(samples) for samples in texts]

    def _vote(self, samples: list[str]) -> dict[str, Any] | None:
        if len(samples) < 2:
            return None
        answers = [extract_answer(text) for text in samples]
        counts = Counter(answer for answer in answers if answer is not None)
        if not counts:
            return {"answers": answers, "majority": None, "votes": 0, "agreement": 0.0}
        majority, votes = counts.most_common(1)[0]
        return {
            "answers": answers,
            "majority": majority,
            "votes": votes,
            "agreement": round(votes / len(samples), 6),
        }

    def _agreement(self, samples: list[str]) -> dict[str, Any] | None:
        if len(samples) < 2:
            return None
        matrix = self._similarities(samples)
        pairs = list(itertools.combinations(range(len(samples)), 2))
        mean = float(np.mean([matrix[i, j] for i, j in pairs]))
        centrality = (matrix.sum(axis=1) - np.diag(matrix)) / (len(samples) - 1)
        return {
            "similarity": round(mean, 6),
            "method": self.options.similarity,
            "central": int(np.argmax(centrality)),
        }

    def _similarities(self, samples: list[str]) -> np.ndarray:
        if self.options.similarity == "embedding":
            if self._embedder is None:
                from distillpipe.scoring.embeddings import Embedder

                self._embedder = Embedder(self.options.embedding_model)
            vectors = self._embedder.encode(samples)
            return vectors @ vectors.T
        if self._rouge is None:
            from rouge_score import rouge_scorer

            self._rouge = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
        size = len(samples)
        matrix = np.eye(size)
        for i, j in itertools.combinations(range(size), 2):
            matrix[i, j] = matrix[j, i] = self._rouge.score(samples[i], samples[j])[
                "rougeL"
            ].fmeasure
        return matrix

    def value(self, score: Any) -> float | None:
        return None if score is None else score[self.metric]

    def decide(self, record: Record, score: Any) -> Verdict:
        if score is None:
            count = len(record.get("responses") or [])
            return Verdict.rejected(f"self-consistency needs at least 2 samples, got {count}")
        reason = self.check(score[self.metric])
        if self.options.mode == "answers":
            if reason is None and score["votes"] < self.options.min_votes:
                reason = f"majority has {score['votes']} votes < min_votes {self.options.min_votes}"
            if score["majority"] is None:
                reason = "no sample gives an extractable answer"
        if reason:
            return Verdict.rejected(reason, score)
        return Verdict.kept(score, self._selection(score))

    def _selection(self, score: dict[str, Any]) -> dict[str, Any]:
        if self.options.mode == "similarity":
            return {"chosen": score["central"], "rejected": None, "by": self.name}
        answers, majority = score["answers"], score["majority"]
        chosen = answers.index(majority)
        dissent = [i for i, a in enumerate(answers) if a is not None and a != majority]
        silent = [i for i, a in enumerate(answers) if a is None]
        rejected = (dissent or silent or [None])[0]
        return {"chosen": chosen, "rejected": rejected, "by": self.name}
