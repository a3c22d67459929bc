"""ROUGE-L novelty against a growing pool of instructions: exact, and fast at scale.

The score is rouge-score's ``rougeL`` F-measure with its default tokenizer
(lowercase, anything but ``[a-z0-9]`` becomes a space, no stemming):
``P = lcs/len(a)``, ``R = lcs/len(b)``, ``F = 2PR/(P+R)``, computed with the
same float operations so the keep/reject decision is identical to brute force.

Brute force (Stanford Alpaca's ``generate_instruction.py``) runs a Python LCS
against every instruction in the pool. Here tokens are interned to ints and
an inverted index gives, with numpy, the size ``m`` of the token-multiset
overlap with every pool entry at once. Since ``lcs <= m``, ``2m/(a+b)`` bounds
F from above; only entries whose bound reaches the threshold (or, for the
exact maximum, beats the best score found so far) get a real LCS, computed by
rapidfuzz's C implementation of ``LCSseq`` on the token-id lists.
"""

from __future__ import annotations

import re
from array import array
from collections import Counter
from dataclasses import dataclass

import numpy as np
from rapidfuzz.distance import LCSseq

# rouge-score's tokenizer lowercases, turns every run of characters outside
# [a-z0-9] into a space and keeps the [a-z0-9]+ runs; the same in one regex,
# without importing rouge-score (whose nltk import costs seconds on every CLI call).
_ROUGE_TOKEN = re.compile(r"[a-z0-9]+")
# Floats from the bound and from the exact formula may differ in the last ulp.
_BOUND_SLACK = 1e-9


def rouge_tokens(text: str) -> list[str]:
    """rouge-score's default tokenisation (no stemming), exactly."""
    return _ROUGE_TOKEN.findall(text.lower())


def f_measure(lcs: int, len_a: int, len_b: int) -> float:
    """rouge-score's ``_score_lcs`` F-measure, with its float operations in its order."""
    if not len_a or not len_b:
        return 0.0
    precision = lcs / len_b
    recall = lcs / len_a
    if precision + recall > 0:
        return 2 * precision * recall / (precision + recall)
    return 0.0


def rouge_l(a: str, b: str) -> float:
    """ROUGE-L F of two texts: ``RougeScorer(["rougeL"]).score(a, b)["rougeL"].fmeasure``."""
    tokens_a, tokens_b = rouge_tokens(a), rouge_tokens(b)
    return f_measure(LCSseq.similarity(tokens_a, tokens_b), len(tokens_a), len(tokens_b))


@dataclass(frozen=True, slots=True)
class Match:
    score: float
    index: int  # position in the pool, -1 when the pool shares no token


class NoveltyIndex:
    """A pool of texts that answers "how close is this to anything in the pool?"."""

    def __init__(self) -> None:
        self._vocab: dict[str, int] = {}
        self._docs: list[list[int]] = []
        self._lengths = array("i")
        # token id -> (doc ids, counts of the token in each doc), both growable int arrays
        self._postings: dict[int, tuple[array, array]] = {}

    def __len__(self) -> int:
        return len(self._docs)

    def _ids(self, tokens: list[str], *, grow: bool) -> list[int]:
        vocab = self._vocab
        if grow:
            return [vocab.setdefault(token, len(vocab)) for token in tokens]
        # A token the pool never saw matches nothing: -1 keeps the sequence's length.
        return [vocab.get(token, -1) for token in tokens]

    def add(self, text: str) -> int:
        """Add a text to the pool; returns its index."""
        ids = self._ids(rouge_tokens(text), grow=True)
        index = len(self._docs)
        self._docs.append(ids)
        self._lengths.append(len(ids))
        for token, count in Counter(ids).items():
            docs, counts = self._postings.setdefault(token, (array("i"), array("i")))
            docs.append(index)
            counts.append(count)
        return index

    def _bounds(self, ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Pool entries sharing a token with ``ids`` and an upper bound of their F."""
        wanted = Counter(token for token in ids if token >= 0)
        if not wanted:
            return np.empty(0, dtype=np.int64), np.empty(0)
        doc_parts, overlap_parts = [], []
        for token, count in wanted.items():
            docs, counts = self._postings[token]
            doc_parts.append(np.frombuffer(docs, dtype=np.int32))
            overlap_parts.append(np.minimum(np.frombuffer(counts, dtype=np.int32), count))
        overlap = np.bincount(
            np.concatenate(doc_parts),
            weights=np.concatenate(overlap_parts),
            minlength=len(self._docs),
        )
        candidates = np.flatnonzero(overlap)
        lengths = np.frombuffer(self._lengths, dtype=np.int32)[candidates]
        bounds = 2.0 * overlap[candidates] / (len(ids) + lengths)
        return candidates, bounds

    def _exact(self, ids: list[int], index: int) -> float:
        doc = self._docs[index]
        return f_measure(LCSseq.similarity(ids, doc), len(ids), len(doc))

    def check(self, text: str, threshold: float) -> tuple[bool, Match]:
        """``(novel, match)``: novel when every pool entry scores below ``threshold``.

        A novel text gets its exact nearest neighbour (branch and bound over the
        entries in falling bound order); a rejected one the first entry found at
        or above the threshold.
        """
        ids = self._ids(rouge_tokens(text), grow=False)
        candidates, bounds = self._bounds(ids)
        best = Match(0.0, -1)
        for position in np.argsort(-bounds, kind="stable"):
            if bounds[position] + _BOUND_SLACK < best.score:
                break
            index = int(candidates[position])
            score = self._exact(ids, index)
            if score >= threshold:
                return False, Match(score, index)
            if score > best.score or (score == best.score and index < best.index):
                best = Match(score, index)
        return True, best

    def best(self, text: str) -> Match:
        """The exact maximum ROUGE-L F against the pool, and where it is."""
        return self.check(text, float("inf"))[1]
