"""Is this short text (a topic name, a question) a near duplicate of one kept before?

Three checks, cheapest first: the same normalised text; ROUGE-L F at or above
a threshold against any kept text (``novelty.NoveltyIndex``, the
Self-Instruct check); the cosine of MiniLM sentence embeddings at or above a
threshold (an ``Embedder`` handed in, none: the check is off). The first
text of a group is kept; a later one is a duplicate naming what it repeats.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from pydantic import Field

from distillpipe.config import StrictModel
from distillpipe.instructions import normalised
from distillpipe.novelty import NoveltyIndex
from distillpipe.scoring.embeddings import embedding_modules


class Encoder(Protocol):
    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray: ...


class NearDuplicateOptions(StrictModel):
    """A stage's ``dedup:`` settings."""

    rouge_l: float = Field(0.7, gt=0.0, le=1.0, description="reject at or above this ROUGE-L F")
    semantic: bool = Field(True, description="also MiniLM cosine (needs distillpipe[hf])")
    cosine: float = Field(0.9, gt=0.0, le=1.0, description="reject at or above this cosine")
    embedding_model: str | None = Field(None, description="default: the packaged MiniLM")

    def optional_modules(self) -> dict[str, str]:
        return embedding_modules(self.embedding_model) if self.semantic else {}

    def embedder(self) -> Encoder | None:
        """The embedding model the semantic check needs (None when it is off)."""
        if not self.semantic:
            return None
        from distillpipe.scoring.embeddings import Embedder

        return Embedder(self.embedding_model)


@dataclass(frozen=True, slots=True)
class Duplicate:
    kind: str  # "exact", "rouge_l" or "cosine"
    of: str  # the kept text it repeats
    score: float

    @property
    def reason(self) -> str:
        if self.kind == "exact":
            return f"the same as {self.of!r}"
        label = "ROUGE-L" if self.kind == "rouge_l" else "cosine"
        return f"{label} {self.score:.3f} with {self.of!r}"


class NearDuplicates:
    """The texts kept so far, and the checks a new one must pass to join them."""

    def __init__(
        self, *, rouge_l: float = 0.7, cosine: float = 0.9, encoder: Encoder | None = None
    ) -> None:
        self.rouge_threshold, self.cosine_threshold, self.encoder = rouge_l, cosine, encoder
        self.texts: list[str] = []
        self._exact: dict[str, int] = {}
        self._rouge = NoveltyIndex()
        self._vectors: list[np.ndarray] = []

    @classmethod
    def from_options(cls, options: NearDuplicateOptions, encoder: Encoder | None) -> NearDuplicates:
        return cls(rouge_l=options.rouge_l, cosine=options.cosine, encoder=encoder)

    def __len__(self) -> int:
        return len(self.texts)

    def __contains__(self, text: str) -> bool:
        return normalised(text) in self._exact

    def screen(self, texts: Sequence[str], limit: int | None = None) -> list[Duplicate | None]:
        """Each text in turn: kept (None, and remembered) or the duplicate it is, of a
        text kept before or earlier in ``texts``; one embedding batch for them all.
        With a ``limit``, screening stops once that many are kept (the verdicts of the
        texts screened come back: a surplus is neither kept nor a duplicate)."""
        vectors = self._encode(texts)
        verdicts: list[Duplicate | None] = []
        kept = 0
        for row, text in enumerate(texts):
            if limit is not None and kept >= limit:
                break
            vector = vectors[row] if vectors is not None else None
            verdict = self._check(text, vector)
            if verdict is None:
                self._keep(text, vector)
                kept += 1
            verdicts.append(verdict)
        return verdicts

    def add(self, texts: Sequence[str]) -> None:
        """Remember texts as kept without checking them (what a stage starts from)."""
        vectors = self._encode(texts)
        for row, text in enumerate(texts):
            self._keep(text, vectors[row] if vectors is not None else None)

    def _encode(self, texts: Sequence[str]) -> np.ndarray | None:
        if self.encoder is None or not texts:
            return None
        return self.encoder.encode(list(texts))

    def _check(self, text: str, vector: np.ndarray | None) -> Duplicate | None:
        exact = self._exact.get(normalised(text))
        if exact is not None:
            return Duplicate("exact", self.texts[exact], 1.0)
        novel, match = self._rouge.check(text, self.rouge_threshold)
        if not novel:
            return Duplicate("rouge_l", self.texts[match.index], match.score)
        if vector is not None and self._vectors:
            similarities = np.stack(self._vectors) @ vector
            best = int(np.argmax(similarities))  # ties: the earliest kept text
            if float(similarities[best]) >= self.cosine_threshold:
                return Duplicate("cosine", self.texts[best], float(similarities[best]))
        return None

    def _keep(self, text: str, vector: np.ndarray | None) -> None:
        self._exact.setdefault(normalised(text), len(self.texts))
        self.texts.append(text)
        self._rouge.add(text)
        if vector is not None:
            self._vectors.append(vector)
