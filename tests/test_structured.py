"""Structured outputs end to end without a model: the response format in requests and
their cache keys, its config keys and their errors, JSON text styles, the grammar,
and what export writes of parsed answers."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from llama_cpp import LlamaGrammar
from support import small_llamacpp_config, write_config

from distillpipe.config import ConfigSource, load_config, parse_config
from distillpipe.dispatch import call_key
from distillpipe.errors import ConfigError, InputError
from distillpipe.stages.export import build_export, write_export
from distillpipe.stages.generate import RequestBuilder
from distillpipe.structured import ResponseFormat, gbnf, json_text
from distillpipe.teachers.base import Request, SamplingParams

SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "kind": {"enum": ["fruit", "vegetable"]}},
    "required": ["name", "kind"],
    "additionalProperties": False,
}
IDENTITY = {"backend": "x", "model": "m"}
FRUIT = ({"role": "user", "content": "Name a fruit."},)


def test_keys_without_a_format_are_those_caches_already_hold():
    """Pinned from the code before response formats existed: old caches still hit."""
    chat = Request("q", SamplingParams(max_tokens=8), messages=FRUIT)
    raw = Request("q", SamplingParams(max_tokens=8), prompt="Fruit:")
    assert call_key(IDENTITY, chat, 3, 0) == (
        "v2:sha256:2a6197fc93a5aa88eb44fd525e4aaddae2375293b2d44885ea116d76b5139b4b"
    )
    assert call_key(IDENTITY, raw, 3, 1) == (
        "v2:sha256:f3cd315a80f83cde034066657be996e3e2059586fcf4315b942373872b02188c"
    )


def test_the_format_is_part_of_the_key_and_only_property_order_matters():
    plain = Request("q", SamplingParams(), messages=FRUIT)
    as_json = Request(
        "q", SamplingParams(), messages=FRUIT, response_format=ResponseFormat.of("json")
    )
    schema = Request(
        "q", SamplingParams(), messages=FRUIT, response_format=ResponseFormat.of(SCHEMA)
    )
    reordered = ResponseFormat.of(dict(reversed(list(SCHEMA.items()))))
    same = Request("q", SamplingParams(), messages=FRUIT, response_format=reordered)
    keys = [call_key(IDENTITY, r, 0, 0) for r in (plain, as_json, schema, same)]
    assert len(set(keys[:3])) == 3
    assert keys[2] == keys[3]
    assert schema.payload()["response_format"]["schema"] == SCHEMA
    swapped = {**SCHEMA, "properties": dict(reversed(list(SCHEMA["properties"].items())))}
    kind_first = Request(
        "q", SamplingParams(), messages=FRUIT, response_format=ResponseFormat.of(swapped)
    )
    assert call_key(IDENTITY, kind_first, 0, 0) != keys[2]  # the model writes `kind` first


def test_json_text_styles():
    value = {"b": [1, 2], "a": "é"}
    assert json_text(value, "compact") == '{"b":[1,2],"a":"é"}'
    assert json_text(value, "canonical") == '{"a":"é","b":[1,2]}'
    assert json_text(value, "pretty") == '{\n  "b": [\n    1,\n    2\n  ],\n  "a": "é"\n}'


def config_with(tmp_path: Path, teacher: dict | None = None, **generate: object):
    data = small_llamacpp_config()
    data["generate"] = {**data.get("generate", {}), **generate}
    if teacher is not None:
        data["teacher"] = teacher
    return write_config(tmp_path / "config.yaml", data)


def test_a_schema_file_beside_the_config_is_read_into_it(tmp_path: Path):
    (tmp_path / "fruit.json").write_text(orjson.dumps(SCHEMA).decode())
    config = load_config(config_with(tmp_path, response_format="fruit.json"))
    assert config.generate.response_format == SCHEMA
    assert config.public_dump()["generate"]["response_format"] == SCHEMA


def test_schema_errors_name_the_key_and_the_file(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"config\.yaml:\d+: generate\.response_format: cannot "
                       r"read schema file .*missing\.json: No such file"):  # fmt: skip
        load_config(config_with(tmp_path, response_format="missing.json"))
    (tmp_path / "broken.json").write_text('{"type": "object",\n}')
    with pytest.raises(ConfigError, match=r"generate\.response_format: .*broken\.json:2: invalid"):
        load_config(config_with(tmp_path, response_format="broken.json"))
    with pytest.raises(ConfigError, match=r"generate\.response_format: not a valid JSON Schema"):
        load_config(config_with(tmp_path, response_format={"type": "objekt"}))
    with pytest.raises(ConfigError, match=r"generate: .*conversation mode takes no response"):
        load_config(config_with(tmp_path, response_format="json", conversation={"turns": 2}))


@pytest.mark.parametrize(
    ("teacher", "said"),
    [
        (
            {"backend": "anthropic", "model": "claude-sonnet-4-20250514", "api_key": "k",
             "thinking_budget": 2048},
            "the anthropic backend .* refuses while thinking",
        ),
        (
            {"backend": "openai", "model": "gpt-4o-mini", "api_key": "k", "mode": "completion"},
            "the openai backend sends response_format with chat requests only",
        ),
    ],
)  # fmt: skip
def test_a_backend_that_cannot_hold_the_schema_says_so_at_validation(tmp_path, teacher, said):
    path = config_with(tmp_path, teacher, response_format=SCHEMA, max_tokens=4096)
    with pytest.raises(ConfigError, match=rf"generate\.response_format: {said}"):
        load_config(path)


def test_anthropic_needs_an_object_at_the_schema_root(tmp_path: Path):
    teacher = {"backend": "anthropic", "model": "claude-3-5-haiku-20241022", "api_key": "k"}
    path = config_with(tmp_path, teacher, response_format={"type": "array"})
    with pytest.raises(ConfigError, match=r"the anthropic backend .* `type: object`"):
        load_config(path)


def test_requests_carry_the_runs_format_or_the_records_own(tmp_path: Path):
    config = load_config(config_with(tmp_path, response_format=SCHEMA))
    build = RequestBuilder(config, "chat")
    assert build({"id": "a", "instruction": "x"}).response_format == ResponseFormat.of(SCHEMA)
    own = build({"id": "b", "instruction": "x", "schema": "json"}).response_format
    assert own == ResponseFormat.of("json")
    with pytest.raises(InputError, match=r"record c: schema: not a valid JSON Schema"):
        build({"id": "c", "instruction": "x", "schema": {"type": 3}})


def test_the_grammar_admits_a_trace_before_the_answer_only_when_asked():
    schema = ResponseFormat.of(SCHEMA)
    plain, traced = gbnf(schema), gbnf(schema, ("<think>", "</think>"))
    assert plain.startswith("root ::=") or "\nroot ::=" in plain
    assert traced.startswith('root ::= trace? answer-root\ntrace ::= "<think>"? trace-text')
    assert "\nroot ::=" not in traced
    for grammar in (plain, traced, gbnf(ResponseFormat.of("json"))):
        LlamaGrammar.from_string(grammar, verbose=False)


def parsed_record(**fields) -> dict:
    answer = '{"name": "apple", "kind": "fruit"}'
    parsed = {"name": "apple", "kind": "fruit"}
    response = {"text": answer, "model": "t", "sample": 0, "parsed": parsed}
    return {"id": "a", "instruction": "Describe an apple.", "input": "It is red.",
            "responses": [response], **fields}  # fmt: skip


def export_config(tmp_path: Path, **export: object):
    data = {**small_llamacpp_config(), "export": {"shuffle": False, **export}}
    data["generate"] = {**data.get("generate", {}), "response_format": SCHEMA}
    return load_config(write_config(tmp_path / "config.yaml", data))


@pytest.mark.parametrize(
    ("style", "content"),
    [
        ("compact", '{"name":"apple","kind":"fruit"}'),
        ("canonical", '{"kind":"fruit","name":"apple"}'),
        ("pretty", '{\n  "name": "apple",\n  "kind": "fruit"\n}'),
    ],
)
def test_messages_rows_carry_the_json_text_in_the_configured_style(tmp_path, style, content):
    exported = build_export([parsed_record()], export_config(tmp_path, json_style=style))
    [row] = exported.splits["train"]
    assert row["messages"][-1] == {"role": "assistant", "content": content}


def test_extraction_rows_and_the_card_records_the_schema(tmp_path: Path):
    config = export_config(tmp_path, format="extraction")
    unparsed = {**parsed_record(id="b"), "responses": [{"text": "{}", "model": "t", "sample": 0}]}
    own = {"type": "object", "required": ["name"]}
    exported = build_export([parsed_record(), unparsed, parsed_record(id="c", schema=own)], config)
    assert exported.splits["train"] == [
        {"input": "Describe an apple.\n\nIt is red.", "output": {"name": "apple", "kind": "fruit"}},
        {"input": "Describe an apple.\n\nIt is red.", "output": {"name": "apple", "kind": "fruit"}},
    ]
    assert exported.skipped == {"no parsed JSON (the format filter parses answers)": 1}
    write_export(exported, config, tmp_path / "out", None)
    card = (tmp_path / "out" / "README.md").read_text()
    assert "## Structured output" in card
    assert '  "required": [\n    "name",\n    "kind"\n  ]' in card  # the run's schema
    assert '  "required": [\n    "name"\n  ]' in card  # the record's own


def test_a_trace_stays_before_the_json_text(tmp_path: Path):
    record = parsed_record()
    record["responses"][0]["reasoning"] = "Apples are fruit."
    [row] = build_export([record], export_config(tmp_path)).splits["train"]
    content = row["messages"][-1]["content"]
    assert content == '<think>\nApples are fruit.\n</think>\n\n{"name":"apple","kind":"fruit"}'


def test_parse_config_alone_refuses_a_schema_path():
    with pytest.raises(ConfigError, match=r"a schema file is read from a config file only"):
        parse_config({"generate": {"response_format": "s.json"}}, ConfigSource("c.yaml", None))
