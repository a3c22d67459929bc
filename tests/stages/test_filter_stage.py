"""The filter stage: filters in order, scores written, rejected records kept aside, stats."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_config

from distillpipe.config import load_config
from distillpipe.errors import ConfigError
from distillpipe.io import read_jsonl, write_jsonl
from distillpipe.records import new_record
from distillpipe.runner import run_stage
from distillpipe.stages import stage_named


def record(instruction: str, *texts: str, finish_reason: str = "stop") -> dict:
    rec = new_record(instruction)
    rec["responses"] = [
        {"text": t, "model": "m", "finish_reason": finish_reason, "usage": {}, "sample": i}
        for i, t in enumerate(texts)
    ]
    return rec


def config_with(tmp_path: Path, filters: list[dict]) -> Path:
    return write_config(
        tmp_path / "config.yaml",
        {"name": "t", "seed": 3, "teacher": {"backend": "llamacpp"}, "filter": filters},
    )


RECORDS = [
    record("Name three primary colours.", "Red, yellow and blue."),
    record("Say hi.", "As an AI language model, I cannot greet."),
    record("Explain gravity in one sentence.", "Mass attracts mass."),
    record("Count to five.", "1 2 3", finish_reason="length"),
    record("Describe the sea.", "   "),
    record("Write a haiku about autumn leaves.", "Leaves drift slowly down / red and gold"),
]


def run_filters(tmp_path: Path, filters: list[dict], records: list[dict] = RECORDS):
    source = tmp_path / "in.jsonl"
    write_jsonl(source, records)
    config = load_config(config_with(tmp_path, filters))
    out, rejected = tmp_path / "out.jsonl", tmp_path / "rejected.jsonl"
    result = run_stage(stage_named("filter"), config, source, out, rejected_path=rejected)
    return result, list(read_jsonl(out)), list(read_jsonl(rejected))


def test_filters_apply_in_order_and_nothing_is_lost(tmp_path: Path) -> None:
    result, kept, rejected = run_filters(
        tmp_path, [{"type": "length", "response": {"min_chars": 1}}, {"type": "heuristics"}]
    )
    assert sorted(r["id"] for r in kept + rejected) == sorted(r["id"] for r in RECORDS)
    by_id = {r["id"]: r["reject"] for r in rejected}
    assert by_id[RECORDS[3]["id"]] == {
        "filter": "length",
        "reason": "response 0 truncated at the token limit",
        "score": by_id[RECORDS[3]["id"]]["score"],
    }
    empty = {"filter": "heuristics", "reason": "response 0 is empty", "score": 1}
    assert by_id[RECORDS[4]["id"]] == empty
    assert by_id[RECORDS[1]["id"]]["filter"] == "heuristics"
    assert "refusal phrase 'As an AI language model'" in by_id[RECORDS[1]["id"]]["reason"]
    assert [r["id"] for r in kept] == [RECORDS[i]["id"] for i in (0, 2, 5)]
    assert set(kept[0]["scores"]) == {"length", "heuristics"}
    stats = result.stats["filters"]
    assert stats["length"]["seen"] == 6 and stats["length"]["rejected"] == 1
    assert stats["heuristics"] == {**stats["heuristics"], "seen": 5, "kept": 3, "rejected": 2}
    assert result.stats["rejected"] == {"length": 1, "heuristics": 2}


def test_a_second_filter_of_one_type_needs_its_own_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config.yaml:\d+: filter.1: a second filter named"):
        load_config(config_with(tmp_path, [{"type": "length"}, {"type": "length"}]))


def test_unknown_filter_type_and_bad_option_name_their_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config.yaml:\d+: filter.0: filter type 'nope'"):
        load_config(config_with(tmp_path, [{"type": "nope"}]))
    with pytest.raises(ConfigError, match=r"unknown key 'filter.0.colour'"):
        load_config(config_with(tmp_path, [{"type": "heuristics", "colour": 1}]))


def test_cli_writes_rejected_beside_the_output(tmp_path: Path, cli_env: dict) -> None:
    source = tmp_path / "in.jsonl"
    write_jsonl(source, RECORDS)
    config = config_with(tmp_path, [{"type": "heuristics"}])
    out = tmp_path / "kept.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "distillpipe", "filter", "-c", str(config), "-i", str(source),
         "-o", str(out)],
        env=cli_env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rejected = list(read_jsonl(tmp_path / "kept.rejected.jsonl"))
    assert len(list(read_jsonl(out))) + len(rejected) == len(RECORDS)
    assert "heuristics" in done.stderr and "rejected" in done.stderr
