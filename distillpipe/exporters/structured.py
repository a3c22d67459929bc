"""Structured answers in exported rows (``export.json_style``).

A sample the format filter parsed (``responses[].parsed``) is exported as that
object's JSON text: canonical (sorted keys, compact), compact (the model's key
order, no spaces) or pretty (indented), so every row of a dataset writes its JSON
one way. The ``extraction`` format writes the object itself.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from distillpipe.exporters.select import Picked
from distillpipe.structured import JsonStyle, json_text

NO_PARSED = "no parsed JSON (the format filter parses answers)"


def _parsed(record: dict[str, Any], sample: int | None) -> tuple[bool, Any]:
    responses = record.get("responses") or []
    if sample is None or not 0 <= sample < len(responses) or "parsed" not in responses[sample]:
        return False, None
    return True, responses[sample]["parsed"]


def with_json_text(record: dict[str, Any], picked: list[Picked], style: JsonStyle) -> list[Picked]:
    """The picks whose samples were parsed, their answers as JSON text in ``style``."""
    out = []
    for pick in picked:
        example = pick.example
        found, parsed = _parsed(record, pick.sample)
        if found:
            example = replace(
                example, response=json_text(parsed, style), parsed=parsed, structured=True
            )
        if example.rejected is not None:
            found, rejected = _parsed(record, pick.rejected_sample)
            if found:
                example = replace(example, rejected=json_text(rejected, style))
        out.append(replace(pick, example=example))
    return out


def schemas_of(records_schemas: list[Any], run_format: Any) -> list[Any]:
    """The distinct schemas a dataset was held to: the run's, then the records' own."""
    found: list[Any] = []
    for schema in [run_format, *records_schemas]:
        if schema is not None and schema not in found:
            found.append(schema)
    return found
