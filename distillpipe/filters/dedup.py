"""Dedup: exact (hash of the normalised text), near-duplicate (MinHash LSH through
datasketch, shingles hashed with xxHash32: 128 permutations, word 5-gram
shingles, Jaccard 0.8 by default) and
optionally semantic (cosine of MiniLM embeddings). The first occurrence is
kept; a duplicate is rejected naming the id it duplicates.

Scoring (normalise, hash, MinHash, embed) is pure per batch; deciding keeps
the index of what was kept so far, so it runs on the driver, in input order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import xxhash
from pydantic import Field

from distillpipe.filters.base import Filter, FilterOptions, Record, Verdict
from distillpipe.filters.text import ngrams, normalise, record_text


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


class DedupFilter(Filter):
    type: ClassVar[str] = "dedup"
    Options = DedupOptions
    options: DedupOptions
    stateful_decide: ClassVar[bool] = True

    def __init__(self, options: FilterOptions, config: Any = None) -> None:
        super().__init__(options, config)
        self._exact: dict[str, str] = {}
        self._lsh: Any = None
        self._signatures: dict[str, np.ndarray] = {}
        self._kept_vectors: np.ndarray | None = None  # rows [:len(_kept_ids)] are in use
        self._kept_ids: list[str] = []
        self._embedder: Any = None
        self._permutations: Any = None

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
            for score, vector in zip(scores, vectors, strict=True):
                score["embedding"] = vector
        return scores

    def _embed(self, texts: list[str]) -> np.ndarray:
        if self._embedder is None:
            from distillpipe.scoring.embeddings import Embedder

            self._embedder = Embedder(self.options.embedding_model)
        return self._embedder.encode(texts)

    def value(self, score: Any) -> float | None:
        return None

    def decide(self, record: Record, score: Any) -> Verdict:
        record_id = record["id"]
        if self.options.exact:
            first = self._exact.get(score["hash"])
            if first is not None:
                return Verdict.rejected(f"exact duplicate of {first}", {"duplicate_of": first})
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
        self._remember(record_id, score)
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

    def _semantic_match(self, vector: np.ndarray) -> tuple[str, float] | None:
        if self._kept_vectors is None or not self._kept_ids:
            return None
        similarities = self._kept_vectors[: len(self._kept_ids)] @ vector
        index = int(np.argmax(similarities))
        if similarities[index] >= self.options.semantic_threshold:
            return self._kept_ids[index], float(similarities[index])
        return None

    def _remember(self, record_id: str, score: dict[str, Any]) -> None:
        if self.options.exact:
            self._exact[score["hash"]] = record_id
        if self.options.near and record_id not in self._signatures:
            self._lsh.insert(record_id, self._lean(score["minhash"]), check_duplication=False)
            self._signatures[record_id] = score["minhash"]
        if self.options.semantic:
            vector, used = score["embedding"], len(self._kept_ids)
            if self._kept_vectors is None or used == len(self._kept_vectors):
                grown = np.zeros((max(1024, 2 * used), vector.shape[0]), dtype=np.float32)
                if self._kept_vectors is not None:
                    grown[:used] = self._kept_vectors
                self._kept_vectors = grown
            self._kept_vectors[used] = vector
            self._kept_ids.append(record_id)
