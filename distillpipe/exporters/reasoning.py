"""Reasoning traces in exported rows, the way reasoning students are trained
(``export.reasoning``):

inline  ``<think>\\n{trace}\\n</think>\\n\\n{answer}`` as the assistant's text: the
        DeepSeek-R1-Distill and Qwen3 convention (tags: ``export.reasoning_tags``)
field   the trace as ``reasoning_content`` on the assistant message, for chat
        templates that read that field; formats of plain strings get a
        ``reasoning`` column (DPO: ``chosen_reasoning``, ``rejected_reasoning``)
drop    the answer alone

A sample without a trace is exported as its answer alone in every layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Literal

from distillpipe.exporters.select import Picked

ReasoningLayout = Literal["inline", "field", "drop"]


def inline(trace: str, answer: str, tags: Sequence[str]) -> str:
    opening, closing = tags
    return f"{opening}\n{trace}\n{closing}\n\n{answer}"


def has_trace(record: dict[str, Any], sample: int | None) -> bool:
    return _trace(record, sample) is not None


def _trace(record: dict[str, Any], sample: int | None) -> str | None:
    responses = record.get("responses") or []
    if sample is None or not 0 <= sample < len(responses):
        return None  # the reference solution: no trace
    trace = responses[sample].get("reasoning")
    return trace.strip() or None if isinstance(trace, str) else None


def with_reasoning(
    record: dict[str, Any],
    picked: list[Picked],
    layout: ReasoningLayout,
    tags: Sequence[str],
) -> list[Picked]:
    """The picks with their samples' traces laid out as ``layout`` says."""
    if layout == "drop":
        return picked
    out = []
    for pick in picked:
        example = pick.example
        trace = _trace(record, pick.sample)
        rejected = _trace(record, pick.rejected_sample) if example.rejected is not None else None
        if layout == "inline":
            example = replace(
                example,
                response=inline(trace, example.response, tags) if trace else example.response,
                rejected=inline(rejected, example.rejected, tags)  # type: ignore[arg-type]
                if rejected
                else example.rejected,
            )
        else:
            example = replace(example, reasoning=trace, rejected_reasoning=rejected)
        out.append(replace(pick, example=example))
    return out
