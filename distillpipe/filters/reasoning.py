"""Checks on a response's reasoning trace: an empty answer after a trace (the teacher
thought and never answered), a trace that repeats itself (a reasoning loop: the
share of its word n-grams that occur more than once, as Gopher's repetition
filters measure it), and optionally a response with no trace at all.

It reads ``responses[].reasoning`` beside ``text`` (``teachers/reasoning.py`` put the
trace there); every other filter reads the answer alone.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, ClassVar

from pydantic import Field

from distillpipe.filters.base import (
    Filter,
    FilterOptions,
    Record,
    ResponseScope,
    Verdict,
    responses_in_scope,
)


class ReasoningFilterOptions(FilterOptions):
    type: str = "reasoning"
    empty_answer: bool = Field(True, description="reject an empty answer after a trace")
    require_trace: bool = Field(False, description="reject a response with no trace")
    ngram: int = Field(10, ge=1, description="words per n-gram of the repetition check")
    max_repeated: float | None = Field(
        0.3, ge=0.0, le=1.0, description="most share of repeated n-grams in a trace; null: off"
    )
    responses: ResponseScope = Field("all", description="check every response, or the primary")

    def cannot_judge_samples(self) -> str | None:
        return None


def repeated_ngram_ratio(text: str, n: int) -> float:
    """The share of the text's word n-grams that occur more than once (0: none repeat)."""
    words = text.split()
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return 0.0
    counts = Counter(grams)
    repeated = sum(count for count in counts.values() if count > 1)
    return repeated / len(grams)


class ReasoningFilter(Filter):
    type: ClassVar[str] = "reasoning"
    Options = ReasoningFilterOptions
    options: ReasoningFilterOptions

    def score(self, records: Sequence[Record]) -> list[Any]:
        return [self._score_one(record) for record in records]

    def _score_one(self, record: Record) -> list[dict[str, Any]]:
        scored = []
        for sample, response in responses_in_scope(record, self.options.responses):
            trace = response.get("reasoning") or ""
            scored.append(
                {
                    "sample": sample,
                    "trace_words": len(trace.split()),
                    "answer_words": len((response.get("text") or "").split()),
                    "repeated": round(repeated_ngram_ratio(trace, self.options.ngram), 4),
                    "kind": response.get("reasoning_kind") or "none",
                }
            )
        return scored

    def problem(self, counts: dict[str, Any]) -> str | None:
        options, sample = self.options, counts["sample"]
        if options.require_trace and not counts["trace_words"]:
            redacted = " (only a redacted one)" if counts["kind"] == "redacted" else ""
            return f"response {sample} has no reasoning trace{redacted}"
        if options.empty_answer and counts["trace_words"] and not counts["answer_words"]:
            return f"response {sample}: empty answer after a {counts['trace_words']}-word trace"
        limit = options.max_repeated
        if limit is not None and counts["repeated"] > limit:
            return (
                f"response {sample}: the trace repeats itself ({counts['repeated']:g} of its "
                f"{options.ngram}-grams repeated > max {limit:g})"
            )
        return None

    def value(self, score: Any) -> float | None:
        return max((counts["repeated"] for counts in score), default=None)

    def passing(self, score: Any) -> list[bool] | None:
        return [self.problem(counts) is None for counts in score]

    def decide(self, record: Record, score: Any) -> Verdict:
        for counts in score:
            if (reason := self.problem(counts)) is not None:
                return Verdict.rejected(reason, score)
        return Verdict.kept(score)
