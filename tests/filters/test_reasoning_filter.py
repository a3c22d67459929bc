"""The reasoning filter: an empty answer after a trace, a trace that repeats itself,
a missing trace — each rejected with its reason; the answer is what other filters read."""

from __future__ import annotations

from distillpipe.filters.base import build_filter
from distillpipe.filters.reasoning import ReasoningFilterOptions, repeated_ngram_ratio
from distillpipe.records import new_record

THOUGHT = "I add the two numbers: two and three make five, so the sum is five."


def traced(*pairs: tuple[str | None, str]) -> dict:
    record = new_record("Add 2 and 3.")
    record["responses"] = [
        {"text": text, "reasoning": trace, "reasoning_kind": "raw" if trace else "none"}
        for trace, text in pairs
    ]
    return record


def decide(record: dict, **options):
    check = build_filter(ReasoningFilterOptions(**options))
    return check.decide(record, check.score([record])[0])


def test_a_trace_with_its_answer_is_kept() -> None:
    assert decide(traced((THOUGHT, "5"))).keep
    assert decide(traced((None, "5"))).keep  # no trace: nothing to check unless required


def test_an_empty_answer_after_a_trace_is_rejected() -> None:
    verdict = decide(traced((THOUGHT, "5"), (THOUGHT, "  ")))
    assert verdict.reason == "response 1: empty answer after a 15-word trace"
    assert decide(traced((THOUGHT, "")), empty_answer=False).keep


def test_a_trace_that_loops_is_rejected_with_its_ratio() -> None:
    loop = "Wait, let me check that again. " * 12
    assert repeated_ngram_ratio(loop, 10) == 1.0
    assert repeated_ngram_ratio(THOUGHT, 10) == 0.0
    verdict = decide(traced((loop, "5")))
    assert (
        verdict.reason
        == "response 0: the trace repeats itself (1 of its 10-grams repeated > max 0.3)"
    )
    assert decide(traced((loop, "5")), max_repeated=None).keep


def test_a_trace_can_be_required() -> None:
    record = traced((None, "5"))
    record["responses"][0]["reasoning_kind"] = "redacted"
    verdict = decide(record, require_trace=True)
    assert verdict.reason == "response 0 has no reasoning trace (only a redacted one)"


def test_it_judges_single_samples_for_rejection_sampling() -> None:
    check = build_filter(ReasoningFilterOptions())
    record = traced((THOUGHT, ""), (THOUGHT, "5"))
    assert check.passing(check.score([record])[0]) == [False, True]
