"""The record: one JSON object per line, passed from stage to stage.

    id           stable hash of the normalised instruction (+ input)
    instruction  str
    input        str, optional
    system       str, optional
    origin       {stage, parent_id?, operator?, round?}
    responses    [{text, model, finish_reason, usage, sample, logprobs?}]
    messages     [{role, content}], optional: a whole conversation (generate's
                 conversation mode), with ``conversation`` {assistant, users, ended?}
    schema       ``json`` or a JSON Schema, optional: this record's answer format,
                 over ``generate.response_format`` (``structured.py``)
    scores       {filter_name: number | object}
    meta         free-form, carried through untouched

Records stay plain dicts on the hot path: stages add the fields they own and
never drop fields they do not.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, NotRequired, TypedDict

import orjson

_WHITESPACE = re.compile(r"\s+")


class Response(TypedDict):
    text: str
    model: str
    finish_reason: str | None
    usage: dict[str, int]
    sample: int
    logprobs: NotRequired[list[Any]]
    parsed: NotRequired[Any]  # the answer's JSON, set by the format filter


class Record(TypedDict, total=False):
    id: str
    instruction: str
    input: str
    system: str
    origin: dict[str, Any]
    responses: list[Response]
    messages: list[dict[str, str]]
    conversation: dict[str, Any]
    schema: Any
    scores: dict[str, Any]
    meta: dict[str, Any]


def canonical_json(value: Any) -> bytes:
    """Sorted keys, compact separators: the same value always gives the same bytes."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def content_hash(value: Any) -> str:
    """An algorithm-prefixed sha256 of the canonical JSON of ``value``."""
    return "sha256:" + hashlib.sha256(canonical_json(value)).hexdigest()


def normalise_text(text: str) -> str:
    return _WHITESPACE.sub(" ", text).strip()


def record_id(instruction: str, input: str | None = None) -> str:
    """The same instruction (and input) always gets the same 16-hex-digit id."""
    key = normalise_text(instruction)
    if input and input.strip():
        key += "\x1f" + normalise_text(input)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def new_record(
    instruction: str,
    *,
    input: str | None = None,
    system: str | None = None,
    origin: dict[str, Any] | None = None,
    meta: dict[str, Any] | None = None,
) -> Record:
    record: Record = {"id": record_id(instruction, input), "instruction": instruction}
    if input:
        record["input"] = input
    if system:
        record["system"] = system
    record["origin"] = origin or {"stage": "input"}
    if meta:
        record["meta"] = meta
    return record


def ensure_id(record: dict[str, Any]) -> dict[str, Any]:
    """Give a record read from a user's file its stable id when it has none."""
    if "id" not in record:
        record["id"] = record_id(record["instruction"], record.get("input"))
    return record


def user_prompt(record: dict[str, Any]) -> str:
    """The instruction and its input as one user turn."""
    instruction = record["instruction"]
    extra = record.get("input")
    return f"{instruction}\n\n{extra}" if extra else instruction
