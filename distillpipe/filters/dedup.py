"""Dedup: exact (hash of the normalised text), near-duplicate (MinHash LSH through
datasketch, shingles hashed with xxHash32: 128 permutations, word 5-gram
shingles, Jaccard 0.8 by default) and
optionally semantic (cosine of MiniLM embeddings). The first occurrence is
kept; a duplicate is rejected naming the id it duplicates, and for an exact
duplicate the input line of the first occurrence too (records repeated in the
input share their id, so the id alone would name the record itself).

Scoring (normalise, hash, MinHash, embed) is pure per batch; deciding keeps
the index of what was kept so far, so it runs on the driver, in input order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import xxhash
from pydantic import Field

from distillpipe.filters.base import Filter, FilterOptions, Record, Verdict
from distillpipe.filters.text import ngrams, normalise, record_text
from distillpipe.io import input_line
from distillpipe.scoring.embeddings import embedding_modules

SIMILARITY_BLOCK = 8192  # kept vectors per matrix product: 256 x 8192 floats = 8 MB


@dataclass(frozen=True, slots=True)
class Embedded:
    """One record's row in its scored batch's embedding matrix: the batch travels as one
    array (one pickle for a Ray actor's answer), and decide() compares it as a block."""

    matrix: np.ndarray
    row: int

    @property
    def vector(self) -> np.ndarray:
        return self.matrix[self.row]


class DedupOptions(FilterOptions):
    type: str = "dedup"
    on: Literal["prompt", "response", "both"] = Field(
        "prompt", description="prompt: instruction + input; response: the primary response"
    )
    exact: bool = True
    near: bool = Field(True, description="MinHash LSH near-duplicates")
    num_perm: int = Field(128, ge=16, le=1024)
    shingle: int = Field(5, ge=1, description="word n-gram size of the shingles")
    threshold: float = Field(0.8, gt=0.0, le=1.0, description="Jaccard similarity")
    semantic: bool = Field(False, description="MiniLM embeddings (needs distillpipe[hf])")
    semantic_threshold: float = Field(0.95, gt=0.0, le=1.0, description="cosine similarity")
    embedding_model: str | None = Field(None, description="default: the packaged MiniLM")
    seed: int = Field(1, description="MinHash permutation seed")

    def optional_modules(self) -> dict[str, str]:
        return embedding_modules(self.embedding_model) if self.semantic else {}


class DedupFilter(Filter):
    type: ClassVar[str] = "dedup"
    Options = DedupOptions
    options: DedupOptions
    stateful_decide: ClassVar[bool] = True
    needs_input_lines: ClassVar[bool] = True  # an exact duplicate's reason names the line

    def __init__(self, options: FilterOptions, config: Any = None) -> None:
        super().__init__(options, config)
        self._exact: dict[str, tuple[str, int | None]] = {}  # hash -> first (id, input line)
        self._lsh: Any = None
        self._signatures: dict[str, np.ndarray] = {}
        self._kept_vectors: np.ndarray | None = None  # rows [:len(_kept_ids)] are in use
        self._kept_ids: list[str] = []
        self._embedder: Any = None
        self._permutations: Any = None
        # semantic: the scored batch being decided, its best match among records kept
        # before it, and the rows of it kept so far
        self._batch: np.ndarray | None = None
        self._batch_best = self._batch_best_index = np.empty(0)
        self._batch_kept_rows: list[int] = []

    def _minhash(self, text: str) -> np.ndarray:
        from datasketch import MinHash

        if self._permutations is None:
            self._permutations = MinHash(num_perm=self.options.num_perm, seed=self.options.seed)
        signature = MinHash(
            num_perm=self.options.num_perm,
            seed=self.options.seed,
            # xxHash32 in C: datasketch's default SHA-1 wrapper is ~7x slower per shingle
            hashfunc=xxhash.xxh32_intdigest,
            permutations=self._permutations.permutations,
            scheme=self._permutations.scheme,
        )
        shingles = ngrams(text.split(), self.options.shingle)
        signature.update_batch([s.encode() for s in shingles])
        return signature.hashvalues

    def score(self, records: Sequence[Record]) -> list[Any]:
        texts = [normalise(record_text(r, self.options.on)) for r in records]
        scores: list[dict[str, Any]] = [
            {"hash": hashlib.sha256(t.encode()).hexdigest()[:32]} for t in texts
        ]
        if self.options.near:
            for score, text in zip(scores, texts, strict=True):
                score["minhash"] = self._minhash(text)
        if self.options.semantic:
            vectors = self._embed([record_text(r, self.options.on) for r in records])
            for row, score in enumerate(scores):
                score["embedding"] = Embedded(vectors, row)
        return scores

    def _embed(self, texts: list[str]) -> np.ndarray:
        if self._embedder is None:
            from distillpipe.scoring.embeddings import Embedder

            self._embedder = Embedder(self.options.embedding_model)
        return self._embedder.encode(texts)

    def value(self, score: Any) -> float | None:
        return None

    def decide(self, record: Record, score: Any) -> Verdict:
        if self.options.exact:
            first = self._exact.get(score["hash"])
            if first is not None:
                return _exact_duplicate(*first)
        if self.options.near:
            match = self._near_match(score["minhash"])
            if match is not None:
                other, similarity = match
                return Verdict.rejected(
                    f"near duplicate of {other} (Jaccard ≈ {similarity:.2f})",
                    {"duplicate_of": other, "jaccard": round(similarity, 4)},
                )
        if self.options.semantic:
            match = self._semantic_match(score["embedding"])
            if match is not None:
                other, similarity = match
                return Verdict.rejected(
                    f"semantic duplicate of {other} (cosine {similarity:.3f})",
                    {"duplicate_of": other, "cosine": round(similarity, 4)},
                )
        self._remember(record, score)
        return Verdict.kept()

    def _near_match(self, signature: np.ndarray) -> tuple[str, float] | None:
        from datasketch import MinHashLSH

        if self._lsh is None:
            self._lsh = MinHashLSH(threshold=self.options.threshold, num_perm=self.options.num_perm)
        best = None
        for other in self._lsh.query(self._lean(signature)):
            # LSH candidates are probable matches; the signatures' agreement estimates Jaccard.
            similarity = float(np.mean(self._signatures[other] == signature))
            if similarity >= self.options.threshold and (best is None or similarity > best[1]):
                best = (other, similarity)
        return best

    def _lean(self, signature: np.ndarray) -> Any:
        from datasketch import LeanMinHash

        scheme = self._permutations.scheme if self._permutations is not None else "affine32"
        return LeanMinHash(seed=self.options.seed, hashvalues=signature, scheme=scheme)

    def _semantic_match(self, embedded: Embedded) -> tuple[str, float] | None:
        """The most similar kept record, if it reaches the threshold. The first record of
        each scored batch compares the whole batch with everything kept before it in one
        blocked matrix product; records kept within the batch are compared row by row."""
        if embedded.matrix is not self._batch:
            self._start_batch(embedded.matrix)
        row = embedded.row
        best_index, best = int(self._batch_best_index[row]), float(self._batch_best[row])
        if self._batch_kept_rows:
            rows = np.asarray(self._batch_kept_rows)
            similarities = embedded.matrix[rows] @ embedded.matrix[row]
            top = int(np.argmax(similarities))
            if similarities[top] > best:  # later kept records win only when strictly closer
                kept_before_batch = len(self._kept_ids) - len(self._batch_kept_rows)
                best_index, best = kept_before_batch + top, float(similarities[top])
        if best_index >= 0 and best >= self.options.semantic_threshold:
            return self._kept_ids[best_index], best
        return None

    def _start_batch(self, matrix: np.ndarray) -> None:
        kept = len(self._kept_ids)
        self._batch = matrix
        self._batch_kept_rows = []
        self._batch_best = np.full(len(matrix), -np.inf, dtype=np.float32)
        self._batch_best_index = np.full(len(matrix), -1, dtype=np.int64)
        if not kept or self._kept_vectors is None:
            return
        rows = np.arange(len(matrix))
        for start in range(0, kept, SIMILARITY_BLOCK):  # bounded memory: batch x block floats
            block = matrix @ self._kept_vectors[start : min(start + SIMILARITY_BLOCK, kept)].T
            top = np.argmax(block, axis=1)
            values = block[rows, top]
            closer = values > self._batch_best  # ties keep the earlier kept record
            self._batch_best[closer] = values[closer]
            self._batch_best_index[closer] = top[closer] + start

    def _remember(self, record: Record, score: dict[str, Any]) -> None:
        record_id = record["id"]
        if self.options.exact:
            self._exact[score["hash"]] = (record_id, input_line(record))
        if self.options.near and record_id not in self._signatures:
            self._lsh.insert(record_id, self._lean(score["minhash"]), check_duplication=False)
            self._signatures[record_id] = score["minhash"]
        if self.options.semantic:
            vector, used = score["embedding"].vector, len(self._kept_ids)
            if self._kept_vectors is None or used == len(self._kept_vectors):
                grown = np.zeros((max(1024, 2 * used), vector.shape[0]), dtype=np.float32)
                if self._kept_vectors is not None:
                    grown[:used] = self._kept_vectors
                self._kept_vectors = grown
            self._kept_vectors[used] = vector
            self._kept_ids.append(record_id)
            self._batch_kept_rows.append(score["embedding"].row)


def _exact_duplicate(first_id: str, first_line: int | None) -> Verdict:
    if first_line is None:  # records not read from a file (the library, a test)
        return Verdict.rejected(f"exact duplicate of {first_id}", {"duplicate_of": first_id})
    return Verdict.rejected(
        f"exact duplicate of line {first_line} (id {first_id})",
        {"duplicate_of": first_id, "line": first_line},
    )
