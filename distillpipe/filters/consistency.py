"""Self-consistency over a record's n ≥ 2 samples (Wang et al. 2022).

``answers`` mode extracts each sample's final answer (``filters/answers.py``),
takes the majority vote and keeps the record when the majority's share of the
samples reaches ``min`` (and it has at least ``min_votes``); a majority
response becomes ``selection.chosen``, and a sample that answered otherwise
``selection.rejected``. ``similarity`` mode, for free-form answers, keeps the
record when the mean pairwise similarity of its samples reaches ``min``:
ROUGE-L F (rouge-score) or the cosine of MiniLM embeddings; the most central
sample is chosen.

With a panel of teachers (``teachers:``), ``across: teachers`` votes over teachers
instead of samples: each teacher's answer is the majority of its own samples, and
the record's majority is the answer most teachers (or, with ``weighted: true``, the
most teacher ``weight``) give; ``agreement`` is the majority's share of the votes.
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
    min_votes: int = Field(
        2, ge=1, description="answers: samples (across teachers: teachers) the majority needs"
    )
    similarity: Literal["rouge-l", "embedding"] = "rouge-l"
    embedding_model: str | None = Field(None, description="default: the packaged MiniLM")
    across: Literal["samples", "teachers"] = Field(
        "samples", description="answers: vote over samples, or over a panel's teachers"
    )
    weighted: bool = Field(False, description="across teachers: votes count teachers' weight")

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
        if self.options.mode == "answers" and self.options.across == "teachers":
            return [self._teacher_vote(record.get("responses") or []) for record in records]
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

    def _teacher_vote(self, responses: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The majority over teachers: each teacher votes its own samples' majority."""
        answers = [extract_answer(r.get("text") or "") for r in responses]
        by_teacher: dict[str, Counter[str]] = {}
        for response, answer in zip(responses, answers, strict=True):
            counts = by_teacher.setdefault(str(response.get("teacher")), Counter())
            if answer is not None:
                counts[answer] += 1
        if len(by_teacher) < 2:
            return None
        weights = self._weights() if self.options.weighted else {}
        votes: Counter[str] = Counter()
        teacher_answers = {}
        for teacher, counts in by_teacher.items():
            answer = counts.most_common(1)[0][0] if counts else None
            teacher_answers[teacher] = answer
            if answer is not None:
                votes[answer] += weights.get(teacher, 1.0)
        total = sum(weights.get(teacher, 1.0) for teacher in by_teacher)
        if not votes:
            return {"answers": answers, "teachers": teacher_answers, "majority": None,
                    "votes": 0, "agreement": 0.0}  # fmt: skip
        majority, weight = votes.most_common(1)[0]
        return {
            "answers": answers,
            "teachers": teacher_answers,
            "majority": majority,
            "votes": sum(1 for a in teacher_answers.values() if a == majority),
            "agreement": round(weight / total, 6),
        }

    def _weights(self) -> dict[str, float]:
        members = getattr(self.config, "teachers", None) or []
        return {member.name: member.weight for member in members}

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
            if self.options.across == "teachers":
                return Verdict.rejected("agreement across teachers needs samples of 2 teachers")
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
