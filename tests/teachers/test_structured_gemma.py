"""The embedded gemma (a 270M base model) held to a schema of required fields, enums and
arrays through llama.cpp's grammar, in process and through llama-cpp-python's server:
every sample parses and validates. Without the grammar the same prompts mostly do not;
both counts are printed (``pytest -s``) for the record."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from support import small_llamacpp_config, write_config

from distillpipe.config import load_config
from distillpipe.filters.format import FormatFilter, FormatOptions
from distillpipe.runner import run_stage
from distillpipe.stages import stage_named

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 16},
        "kind": {"enum": ["fruit", "vegetable", "grain"]},
        "colors": {
            "type": "array",
            "items": {"enum": ["red", "green", "yellow", "orange", "brown"]},
            "minItems": 1,
            "maxItems": 2,
        },
    },
    "required": ["name", "kind", "colors"],
    "additionalProperties": False,
}
FOODS = ["an apple", "a carrot", "rice"]
RECORDS = [
    {"id": f"f{i}", "instruction": f"Describe {food} as a JSON object with name, kind, colors."}
    for i, food in enumerate(FOODS)
]
GENERATE = {"max_tokens": 40, "temperature": 0.7}


def valid_share(tmp_path: Path, data: dict, records: list[dict] = RECORDS) -> tuple[int, int]:
    """(samples that parse and validate, samples) for one generate run of ``data``."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    config = load_config(write_config(tmp_path / "c.yaml", data))
    run_stage(stage_named("generate"), config, source, tmp_path / "out.jsonl")
    out = [orjson.loads(line) for line in (tmp_path / "out.jsonl").read_bytes().splitlines()]
    filter = FormatFilter(FormatOptions(type="format", schema=SCHEMA))
    verdicts = [filter.passing(score) for score in filter.score(out)]
    return sum(ok for samples in verdicts for ok in samples), sum(map(len, verdicts))


def with_format(data: dict, on: bool) -> dict:
    if on:
        data["generate"]["response_format"] = SCHEMA
    return data


@pytest.mark.slow
def test_gemma_in_process_holds_to_the_schema_only_with_the_grammar(tmp_path: Path):
    constrained = valid_share(tmp_path / "a", with_format(small_llamacpp_config(**GENERATE), True))
    free = valid_share(tmp_path / "b", with_format(small_llamacpp_config(**GENERATE), False))
    print(f"\nin process, completion mode: valid {constrained} with the grammar, {free} without")
    assert constrained == (len(RECORDS), len(RECORDS))
    assert free[0] <= len(RECORDS) // 2


@pytest.mark.slow
def test_gemma_in_process_chat_mode_with_the_grammar(tmp_path: Path):
    data = with_format(small_llamacpp_config(**GENERATE), True)
    data["teacher"]["mode"] = "chat"
    assert valid_share(tmp_path, data, RECORDS[:1]) == (1, 1)


def server_config(base_url: str, mode: str, schema_via: str, on: bool) -> dict:
    data = small_llamacpp_config(**GENERATE)
    data["teacher"] = {
        "backend": "openai",
        "model": "gemma",
        "base_url": base_url,
        "mode": mode,
        "schema_via": schema_via,
    }
    return with_format(data, on)


@pytest.mark.slow
def test_gemma_through_the_llama_cpp_server_holds_to_the_schema(tmp_path: Path, llama_server):
    grammar = valid_share(
        tmp_path / "a", server_config(llama_server, "completion", "grammar", True)
    )
    free = valid_share(tmp_path / "b", server_config(llama_server, "completion", "grammar", False))
    chat = valid_share(
        tmp_path / "c", server_config(llama_server, "chat", "json_object", True), RECORDS[:1]
    )
    print(f"\nllama.cpp server: valid {grammar} with the grammar, {free} without; chat {chat}")
    assert grammar == (len(RECORDS), len(RECORDS))
    assert chat == (1, 1)
    assert free[0] <= len(RECORDS) // 2
