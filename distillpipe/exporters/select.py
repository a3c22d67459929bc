"""Which responses of a record become training examples.

The filter stage records its pick as ``selection: {chosen, rejected, by}``
(indexes into ``responses``); without one the first sample is the answer.
A DPO pair needs a real preference signal — a selection with a rejected
sample — and is never invented: records without one are counted and skipped.

With ``include_reference`` the record's reference solution (ground truth)
becomes a row too: beside the teacher's (``extra``), or in place of them when no
teacher sample passed verification (``fallback``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from distillpipe.exporters.formats import Example
from distillpipe.filters.fields import field_values

NO_RESPONSE = "no response"
NO_PREFERENCE = "no preference signal"
SAME_TEXT = "chosen and rejected are the same text"


@dataclass(slots=True)
class Picked:
    sample: int | None  # None: the reference solution, no teacher sample
    example: Example
    rejected_sample: int | None = None


def _index(value: Any, responses: list[dict[str, Any]]) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if 0 <= value < len(responses) else None


def _text(responses: list[dict[str, Any]], index: int) -> str:
    return (responses[index].get("text") or "").strip()


def chosen_index(record: dict[str, Any]) -> int:
    selection = record.get("selection") or {}
    chosen = _index(selection.get("chosen"), record.get("responses") or [])
    return 0 if chosen is None else chosen


def _example(record: dict[str, Any], system: str | None, response: str, rejected=None) -> Example:
    return Example(
        system=system,
        instruction=record["instruction"],
        input=record.get("input") or "",
        response=response,
        rejected=rejected,
    )


def pick_sft(
    record: dict[str, Any], system: str | None, all_samples: bool
) -> tuple[list[Picked], str | None]:
    """The examples a record gives an SFT format, or why it gives none."""
    responses = record.get("responses") or []
    indexes = range(len(responses)) if all_samples else [chosen_index(record)]
    texts = ((i, _text(responses, i)) for i in indexes if i < len(responses))
    picked = [Picked(i, _example(record, system, text)) for i, text in texts if text]
    return picked, (None if picked else NO_RESPONSE)


def sample_scores(record: dict[str, Any]) -> list[float | None] | None:
    """The per-sample scores of the filter that made the record's selection (a reward
    model's or judge's ``rewards``); None when it left none."""
    by = (record.get("selection") or {}).get("by")
    score = (record.get("scores") or {}).get(by) if by else None
    values = score.get("rewards") if isinstance(score, dict) else None
    if not isinstance(values, list) or len(values) != len(record.get("responses") or []):
        return None
    return [v if isinstance(v, int | float) and not isinstance(v, bool) else None for v in values]


def best_per_teacher(record: dict[str, Any]) -> list[int]:
    """Each panel member's best sample (by the selection's scores; without scores the
    chosen sample for its teacher, else that teacher's first), in panel order."""
    responses = record.get("responses") or []
    scores = sample_scores(record)
    chosen = chosen_index(record) if responses else None
    groups: dict[Any, list[int]] = {}
    for index, response in enumerate(responses):
        groups.setdefault(response.get("teacher"), []).append(index)
    best = []
    for indexes in groups.values():
        if scores is not None and any(scores[i] is not None for i in indexes):
            rated = [i for i in indexes if scores[i] is not None]
            best.append(max(rated, key=lambda i: (scores[i], -i)))
        else:
            best.append(chosen if chosen in indexes else indexes[0])
    return best


def pick_best_per_teacher(
    record: dict[str, Any], system: str | None
) -> tuple[list[Picked], str | None]:
    """An SFT example from each panel member's best sample."""
    responses = record.get("responses") or []
    texts = ((i, _text(responses, i)) for i in best_per_teacher(record))
    picked = [Picked(i, _example(record, system, text)) for i, text in texts if text]
    return picked, (None if picked else NO_RESPONSE)


def pick_preference(record: dict[str, Any], system: str | None) -> tuple[list[Picked], str | None]:
    """The (chosen, rejected) pair of a record with a real preference signal."""
    responses = record.get("responses") or []
    selection = record.get("selection") or {}
    chosen = _index(selection.get("chosen"), responses)
    rejected = _index(selection.get("rejected"), responses)
    if chosen is None or rejected is None or chosen == rejected:
        return [], NO_PREFERENCE
    chosen_text, rejected_text = _text(responses, chosen), _text(responses, rejected)
    if not chosen_text or not rejected_text:
        return [], NO_RESPONSE
    if chosen_text == rejected_text:
        return [], SAME_TEXT
    return [Picked(chosen, _example(record, system, chosen_text, rejected_text), rejected)], None


def reference_solution(record: dict[str, Any], fields: Sequence[str]) -> str | None:
    """The first reference found at ``fields`` as text; an object gives its
    ``solution``, else its ``answer``."""
    for path in fields:
        for value in field_values(record, path):
            if isinstance(value, dict):
                value = value.get("solution") or value.get("answer")
            if isinstance(value, bool) or value is None:
                continue
            if isinstance(value, int | float | str) and str(value).strip():
                return str(value).strip()
    return None


def no_sample_passed(record: dict[str, Any]) -> bool:
    """Whether the record says none of its samples passed verification: rejection
    sampling's ``sampling.passed``, or a reference/execution score's per-sample list."""
    if (record.get("sampling") or {}).get("passed") == []:
        return True
    for score in (record.get("scores") or {}).values():
        verdicts = score.get("correct", score.get("passed")) if isinstance(score, dict) else None
        if isinstance(verdicts, list) and verdicts and not any(verdicts):
            return True
    return False


def with_reference(
    record: dict[str, Any],
    system: str | None,
    picked: tuple[list[Picked], str | None],
    fields: Sequence[str],
    mode: Literal["extra", "fallback"],
) -> tuple[list[Picked], str | None]:
    """The teacher's picks with the reference solution added (extra), or replacing them
    when no teacher sample passed or none gave a response (fallback)."""
    rows, reason = picked
    solution = reference_solution(record, fields)
    if solution is None:
        return rows, reason
    reference = Picked(None, _example(record, system, solution))
    if mode == "extra":
        return [*rows, reference], None
    if reason is not None or no_sample_passed(record):
        return [reference], None
    return rows, reason
