"""Structured outputs: the response format a request asks for, and JSON text.

``generate.response_format`` (or a record's own ``schema``) is ``json`` (any JSON
object) or a JSON Schema: inline in the config, or the path of a ``.json`` file
beside it. Each backend maps it to its own mechanism (``teachers/*.py``):

    llamacpp       a GBNF grammar from the schema (llama-cpp-python's converter),
                   chat and completion mode alike
    openai         ``teacher.schema_via``: response_format (OpenAI's json_schema,
                   strict), json_object (llama-cpp-python's server), grammar (GBNF,
                   llama-cpp-python's server, completions too), structured_outputs /
                   guided_json (a vLLM server, newer / older)
    vllm           ``StructuredOutputsParams(json=...)`` in SamplingParams
                   (``GuidedDecodingParams`` on older vLLM)
    anthropic      a forced tool call whose ``input_schema`` is the schema; the
                   tool's input, as JSON text, is the answer

The format enters the request's cache key (``Request.payload``) as ``json`` or
the schema itself; a request without one keeps the key it always had.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson

from distillpipe.errors import ConfigError, InputError
from distillpipe.records import canonical_json

JSON_OBJECT: dict[str, Any] = {"type": "object"}
JsonStyle = Literal["canonical", "compact", "pretty"]


@dataclass(frozen=True, slots=True)
class ResponseFormat:
    """``json`` (any object) or a JSON Schema, held as JSON text so that a request stays
    hashable. The text keeps the schema's key order: property order steers what the
    model writes first, so the cache key holds it beside the canonical schema."""

    kind: Literal["json", "schema"]
    schema_text: str = ""

    @classmethod
    def of(cls, value: Any) -> ResponseFormat | None:
        """From a config value or a record's ``schema``: None, ``"json"`` or a schema
        (already validated: :func:`schema_error`)."""
        if value is None:
            return None
        if value == "json":
            return cls("json")
        return cls("schema", orjson.dumps(value).decode())

    @property
    def schema(self) -> dict[str, Any]:
        """The schema to enforce; ``json`` is any object."""
        return _parsed(self.schema_text) if self.kind == "schema" else dict(JSON_OBJECT)

    @property
    def value(self) -> Any:
        """The config value it came from: ``json`` or the schema in its own key order."""
        return "json" if self.kind == "json" else self.schema

    def key(self) -> Any:
        """What the cache key holds: ``json``, or the schema with the order of every
        ``properties`` in it (its other keys' order changes nothing a model writes)."""
        if self.kind == "json":
            return "json"
        return {"schema": self.schema, "property_order": property_orders(self.schema)}


def property_orders(schema: Any) -> list[list[str]]:
    """The names of every ``properties`` object in ``schema``, each in its own order,
    found in a walk that visits keys sorted (so the walk itself ignores key order)."""
    found: list[list[str]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            properties = node.get("properties")
            if isinstance(properties, dict):
                found.append(list(properties))
            for key in sorted(node):
                walk(node[key])
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(schema)
    return found


@functools.cache
def _parsed(text: str) -> Any:
    return orjson.loads(text)


def schema_error(value: Any) -> str | None:
    """Why ``value`` is no response format (``json`` or a JSON Schema object); None if it is."""
    if value == "json":
        return None
    if not isinstance(value, dict):
        return "expected `json`, a JSON Schema object or the path of a .json file holding one"
    from jsonschema import SchemaError, validators

    try:
        validators.validator_for(value).check_schema(value)
    except SchemaError as exc:
        where = "".join(f"[{p!r}]" for p in exc.path)
        return f"not a valid JSON Schema{' at ' + where if where else ''}: {exc.message}"
    return None


def record_format(record: dict[str, Any], default: ResponseFormat | None) -> ResponseFormat | None:
    """The record's own ``schema`` (validated: a bad one names the record), else ``default``."""
    if record.get("schema") is None:
        return default
    found = ResponseFormat.of(record["schema"])
    assert found is not None
    problem = _checked(found.schema_text) if found.kind == "schema" else None
    if problem is not None:
        raise InputError(f"record {record.get('id', '?')}: schema: {problem}")
    return found


@functools.lru_cache(maxsize=256)
def _checked(schema_text: str) -> str | None:
    """:func:`schema_error` once per distinct schema (records of one task share theirs)."""
    return schema_error(_parsed(schema_text))


def load_schema_file(path: Path, key: str) -> Any:
    """The schema a ``.json`` file holds; a one-line error naming ``key`` and the file."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read schema file {path}: {exc.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{key}: {path}:{exc.lineno}: invalid JSON: {exc.msg}") from None


def json_text(value: Any, style: JsonStyle = "compact") -> str:
    """``value`` as JSON text: canonical (sorted keys, compact), compact (the model's
    key order) or pretty (indented by two)."""
    if style == "canonical":
        return canonical_json(value).decode()
    if style == "pretty":
        return json.dumps(value, ensure_ascii=False, indent=2)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def gbnf(response_format: ResponseFormat, trace: tuple[str, str] | None = None) -> str:
    """A llama.cpp grammar (GBNF) that admits exactly the JSON the format allows.

    With ``trace`` (opening and closing tags), an optional reasoning trace may come
    first (its opening tag optional too: a completion prompt may have opened it): the
    schema constrains the answer after it, never the trace."""
    from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

    if response_format.kind == "json":
        grammar = JSON_GBNF
    else:
        grammar = json_schema_to_gbnf(response_format.schema_text)
    if trace is None:
        return grammar
    opening, closing = (json.dumps(tag) for tag in trace)
    renamed = "\n".join(
        "answer-root ::=" + line[len("root ::=") :] if line.startswith("root ::=") else line
        for line in grammar.splitlines()
    )
    return (
        f"root ::= trace? answer-root\n"
        f"trace ::= {opening}? trace-text {closing} [ \\t\\n]{{0,4}}\n"
        f'trace-text ::= ([^<] | "<" [^/])*\n' + renamed
    )
