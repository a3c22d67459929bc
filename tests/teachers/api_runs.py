"""Helpers for the API teacher tests: a config aimed at the fault server, a generate run.

(Not a conftest.py: test modules import the root conftest by name, and a second
conftest module would shadow it.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from fault_server import FaultServer
from support import write_records

from distillpipe.config import ConfigSource, parse_config
from distillpipe.runner import StageResult, run_stage
from distillpipe.stages import stage_named


def api_config(
    server: FaultServer, backend: str = "openai", generate: dict | None = None, **teacher: Any
):
    base_url = f"{server.url}/v1" if backend == "openai" else server.url
    model = "gpt-4o-mini" if backend == "openai" else "claude-3-5-haiku-20241022"
    data = {
        "name": "api",
        "seed": 1,
        "teacher": {
            "backend": backend,
            "model": model,
            "base_url": base_url,
            "api_key": "sk-test-secret",
            "concurrency": 8,
            "timeout": 2.0,
            "max_retries": 3,
            "retry_backoff": 0.02,
            "poll_interval": 0.05,
            **teacher,
        },
        "generate": {"n": 1, "max_tokens": 16, **(generate or {})},
    }
    return parse_config(data, ConfigSource("test.yaml", None))


def generate(config, tmp_path: Path, count: int, **kwargs: Any) -> tuple[StageResult, list]:
    source = write_records(tmp_path / "in.jsonl", count)
    output = tmp_path / "out.jsonl"
    result = run_stage(stage_named("generate"), config, source, output, **kwargs)
    return result, [orjson.loads(line) for line in output.read_bytes().splitlines()]
