"""A real trace from the embedded gemma: the ``reasoning`` completion prompt opens a
``<think>`` block (its examples show the closing tag and an answer after it), and the
answer comes back through llama.cpp, in process and through its OpenAI-compatible
server, parsed into reasoning and answer by the one parser."""

from __future__ import annotations

from pathlib import Path

import orjson
from support import small_llamacpp_config, write_config

from distillpipe.config import load_config
from distillpipe.runner import run_stage
from distillpipe.stages import stage_named

QUESTIONS = [{"id": "q1", "instruction": "What is 1 + 2?"}]
GENERATE = {"template": "reasoning", "max_tokens": 24, "temperature": 0.0}


def generate(tmp_path: Path, data: dict) -> dict:
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"".join(orjson.dumps(q) + b"\n" for q in QUESTIONS))
    config = load_config(write_config(tmp_path / "c.yaml", data))
    run_stage(stage_named("generate"), config, source, tmp_path / "out.jsonl")
    [record] = [orjson.loads(line) for line in (tmp_path / "out.jsonl").read_bytes().splitlines()]
    [response] = record["responses"]
    return response


def check_trace(response: dict) -> None:
    assert response["finish_reason"] == "stop"
    assert response["reasoning_kind"] == "raw"
    assert "3" in response["reasoning"] and "think>" not in response["reasoning"]
    assert response["text"] == "3"  # the answer alone, free of the trace and its tags
    assert response["usage"]["reasoning_tokens"] > 0


def test_a_trace_from_gemma_in_process(tmp_path):
    response = generate(tmp_path, small_llamacpp_config(**GENERATE))
    check_trace(response)
    assert response["provenance"]["backend"] == "llamacpp"
    assert response["provenance"]["endpoint"] is None


def test_a_trace_from_gemma_through_the_llama_cpp_server(tmp_path, llama_server):
    data = small_llamacpp_config(**GENERATE)
    data["teacher"] = {
        "backend": "openai",
        "model": "gemma",
        "base_url": llama_server,
        "mode": "completion",
    }
    response = generate(tmp_path, data)
    check_trace(response)
    assert response["provenance"]["endpoint"] == llama_server.split("//")[1].split("/")[0]
