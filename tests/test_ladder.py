"""The truncation ladder: a sample cut off while thinking is asked again with a larger
budget, each attempt its own cached, counted and priced call; cut off at the top, it
is rejected with its attempts named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from fault_server import TRACE, FaultServer
from support import write_records

from distillpipe.config import ConfigSource, parse_config
from distillpipe.errors import ConfigError
from distillpipe.runner import run_stage
from distillpipe.stages import stage_named
from distillpipe.stages.generate import LADDER


def api_config(server: FaultServer, generate: dict[str, Any]):
    teacher = {"backend": "openai", "model": "gpt-4o-mini", "base_url": f"{server.url}/v1"}
    data = {"seed": 1, "teacher": {**teacher, "api_key": "sk-test"}, "generate": generate}
    return parse_config(data, ConfigSource("test.yaml", None))


def generate(config, folder: Path, count: int, **kwargs: Any):
    folder.mkdir(exist_ok=True)
    source = write_records(folder / "in.jsonl", count)
    result = run_stage(stage_named("generate"), config, source, folder / "out.jsonl", **kwargs)
    return result, [orjson.loads(line) for line in (folder / "out.jsonl").read_bytes().splitlines()]


def sent_limits(server: FaultServer) -> list[int]:
    return [entry["body"]["max_tokens"] for entry in server.received]


def test_a_sample_climbs_the_ladder_until_its_budget_suffices(fault_server, tmp_path):
    fault_server.reasoning_shape = "reasoning_content"
    fault_server.needs_tokens = 100
    config = api_config(fault_server, generate={"max_tokens": [16, 64, 256, 1024], "n": 2})
    result, [record] = generate(config, tmp_path / "first", 1)
    assert sent_limits(fault_server) == [16, 16, 64, 64, 256, 256]
    assert [r["finish_reason"] for r in record["responses"]] == ["stop", "stop"]
    for sample, response in enumerate(record["responses"]):
        assert response["sample"] == sample
        assert response["text"].startswith("echo: ") and response["reasoning"] == TRACE
        assert response["provenance"]["attempt"] == 3
        assert response["provenance"]["params"]["max_tokens"] == 256
    teacher = result.stats["teacher"]
    assert teacher["teacher_calls"] == 6 and teacher["completion_tokens"] > 0
    assert result.stats["ladder"] == {
        "rungs": [16, 64, 256, 1024],
        "samples_by_attempts": {"3": 2},
        "cut_off_at_top": 0,
    }

    again, _ = generate(config, tmp_path / "again", 1)
    assert len(fault_server.received) == 6  # every attempt was cached: a rerun asks nothing
    assert again.stats["teacher"]["cache_hits"] == 6
    assert (tmp_path / "again/out.jsonl").read_bytes() == (
        tmp_path / "first/out.jsonl"
    ).read_bytes()


def test_a_sample_cut_off_at_the_top_is_rejected_with_its_attempts(fault_server, tmp_path):
    fault_server.reasoning_shape = "inline"
    fault_server.needs_tokens = 100
    config = api_config(fault_server, generate={"max_tokens": [16, 32]})
    rejected = tmp_path / "rejected.jsonl"
    result, kept = generate(config, tmp_path, 2, rejected_path=rejected)
    assert kept == [] and result.records_out == 0
    rows = [orjson.loads(line) for line in rejected.read_bytes().splitlines()]
    assert [row["id"] for row in rows] == ["r0", "r1"]
    for row in rows:
        assert row["reject"]["filter"] == LADDER
        assert row["reject"]["reason"] == (
            "sample 0 cut off while thinking at every max_tokens of the ladder (2 attempts: 16, 32)"
        )
        [response] = row["responses"]
        assert response["text"] == "" and response["reasoning"]
    assert result.stats["ladder"]["cut_off_at_top"] == 2


def test_a_ladder_must_rise():
    data = {"teacher": {"backend": "llamacpp"}, "generate": {"max_tokens": [64, 32]}}
    with pytest.raises(ConfigError, match=r"generate\.max_tokens: .*must rise"):
        parse_config(data, ConfigSource("c.yaml", None))


def test_every_rung_is_checked_against_the_model_rules():
    data = {
        "teacher": {
            "backend": "anthropic",
            "model": "claude-sonnet-4-20250514",
            "api_key": "k",
            "thinking_budget": 2048,
        },
        "generate": {"max_tokens": [1024, 4096]},  # the first rung is below the budget
    }
    with pytest.raises(ConfigError, match=r"generate\.max_tokens: 1024 is not above"):
        parse_config(data, ConfigSource("c.yaml", None))
