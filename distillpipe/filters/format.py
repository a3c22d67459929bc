"""The ``format`` filter: answers that must be JSON of a schema, match a regex or be
one of a set of labels.

JSON: each answer is parsed (``json_text.py`` takes off the wrappers ``strip``
names: a fenced block, prose around the JSON) and validated with ``jsonschema``
against the filter's ``schema``, else the record's own ``schema``, else the run's
``generate.response_format`` (``json``: any object). A valid answer's object is
stored in ``responses[].parsed`` (export writes it out, ``export.json_style``);
an invalid one rejects the record with the decoder's message or the most relevant
validation error, path and message: ``response 0: $.items[0].kind: 'x' is not one
of ['a', 'b']``.

Other formats on request: ``regex`` (the whole answer, stripped, must match) and
``labels`` (the answer, stripped, must be one of them). The answer checked is the
text after any reasoning trace (``responses[].text``; the trace is in
``reasoning``), so a schema never applies to a trace.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any, ClassVar

from pydantic import ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from distillpipe.filters.base import (
    Filter,
    FilterOptions,
    Record,
    ResponseScope,
    Verdict,
    responses_in_scope,
)
from distillpipe.filters.json_text import Wrapper, extract_json, json_path
from distillpipe.structured import ResponseFormat, record_format, schema_error


class FormatOptions(FilterOptions):
    type: str = "format"
    schema_: str | dict[str, Any] | None = Field(
        None,
        alias="schema",
        description="json, a JSON Schema or a .json file beside the config; default: the "
        "record's schema, else generate.response_format",
    )
    strip: list[Wrapper] = Field(
        default_factory=lambda: ["fence"],
        description="wrappers taken off before parsing: fence (a fenced block), prose "
        "(text before and after the JSON)",
    )
    regex: str | None = Field(None, description="the whole answer (stripped) must match it")
    labels: list[str] | None = Field(None, description="the answer (stripped) must be one")
    ignore_case: bool = Field(False, description="regex and labels: ignore case")
    responses: ResponseScope = Field("all", description="check every response, or the primary")

    # `schema` in the config and in its dump; `schema_` here (BaseModel.schema exists)
    model_config = ConfigDict(extra="forbid", validate_by_name=True, serialize_by_alias=True)

    @field_validator("schema_")
    @classmethod
    def _json_or_schema(cls, value: Any) -> Any:
        if isinstance(value, str) and value != "json":  # load_config has read any file
            raise PydanticCustomError(
                "schema_path", f"{value!r}: a schema file is read from a config file only"
            )
        problem = None if value is None else schema_error(value)
        if problem is not None:
            raise PydanticCustomError("schema", problem)
        return value

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise PydanticCustomError("regex", f"not a regular expression: {exc}") from None
        return value

    def cannot_judge_samples(self) -> str | None:
        return None


class FormatFilter(Filter):
    type: ClassVar[str] = "format"
    Options = FormatOptions
    options: FormatOptions

    def __init__(self, options: FilterOptions, config: Any = None) -> None:
        super().__init__(options, config)
        flags = re.IGNORECASE if self.options.ignore_case else 0
        self.pattern = re.compile(self.options.regex, flags) if self.options.regex else None
        labels = self.options.labels
        self.labels = None if labels is None else {self._fold(label) for label in labels}
        own = ResponseFormat.of(self.options.schema_)
        run = config.generate.response_format_value if config is not None else None
        self.default_format = own or run
        self.own_format = own is not None

    def _fold(self, text: str) -> str:
        return text.casefold() if self.options.ignore_case else text

    def format_for(self, record: Record) -> ResponseFormat | None:
        """The filter's schema, else the record's, else the run's."""
        if self.own_format:
            return self.default_format
        return record_format(record, self.default_format)

    def score(self, records: Sequence[Record]) -> list[Any]:
        return [self._score_one(record) for record in records]

    def _score_one(self, record: Record) -> list[dict[str, Any]]:
        response_format = self.format_for(record)
        return [
            {"sample": sample, **self.check(response.get("text") or "", response_format)}
            for sample, response in responses_in_scope(record, self.options.responses)
        ]

    def check(self, text: str, response_format: ResponseFormat | None) -> dict[str, Any]:
        """``{ok, error?, parsed?}`` for one answer."""
        answer = text.strip()
        if self.pattern is not None and not self.pattern.fullmatch(answer):
            return {"ok": False, "error": f"does not match {self.options.regex!r}"}
        if self.labels is not None and self._fold(answer) not in self.labels:
            shown = answer if len(answer) <= 40 else answer[:40] + "…"
            return {"ok": False, "error": f"{shown!r} is not one of {self.options.labels}"}
        if response_format is None:
            return {"ok": True}
        extracted = extract_json(text, self.options.strip)
        if not extracted.ok:
            return {"ok": False, "error": extracted.error}
        error = first_error(response_format.schema_text, response_format.kind, extracted.value)
        if error is not None:
            return {"ok": False, "error": error}
        return {"ok": True, "parsed": extracted.value}

    def value(self, score: Any) -> float | None:
        return sum(item["ok"] for item in score) / len(score) if score else None

    def passing(self, score: Any) -> list[bool] | None:
        return [item["ok"] for item in score]

    def decide(self, record: Record, score: Any) -> Verdict:
        responses = record.get("responses") or []
        for item in score:
            if "parsed" in item and item["sample"] < len(responses):
                responses[item["sample"]]["parsed"] = item["parsed"]
        summary = {
            "valid": [item["ok"] for item in score],
            "errors": [item.get("error") for item in score],
        }
        for item in score:
            if not item["ok"]:
                return Verdict.rejected(f"response {item['sample']}: {item['error']}", summary)
        return Verdict.kept(summary)


def first_error(schema_text: str, kind: str, value: Any) -> str | None:
    """The most relevant validation error as ``$.path: message``; None when valid."""
    from jsonschema.exceptions import best_match

    error = best_match(_validator(schema_text, kind).iter_errors(value))
    if error is None:
        return None
    return f"{json_path(error.absolute_path)}: {error.message}"


@functools.lru_cache(maxsize=64)
def _validator(schema_text: str, kind: str) -> Any:
    from jsonschema import validators

    schema = ResponseFormat(kind, schema_text).schema  # type: ignore[arg-type]
    return validators.validator_for(schema)(schema)
