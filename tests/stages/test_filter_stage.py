"""The filter stage: filters in order, scores written, rejected records kept aside, stats."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support import write_config

from distillpipe.config import load_config
from distillpipe.errors import ConfigError
from distillpipe.io import read_jsonl, write_jsonl
from distillpipe.records import new_record
from distillpipe.runner import run_stage
from distillpipe.stages import stage_named
from distillpipe.stages.filter import FilterStats


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


def corpus(tmp_path: Path) -> tuple[list[dict], dict]:
    """Records with planted problems: duplicates, contamination, disagreement, refusals."""
    bench = tmp_path / "bench.jsonl"
    leaked = "a farmer has 17 sheep and all but 9 run away so how many sheep are left now"
    write_jsonl(bench, [{"question": leaked}])
    records = [
        record(f"Question {i}: what is {i} plus {i}?", f"The answer is {2 * i}.",
               f"So \\boxed{{{2 * i}}}", f"It is {2 * i + (i % 3 == 0)}.")
        for i in range(1, 13)
    ]  # fmt: skip
    records.append(record("Question 1: what is 1 plus 1?  ", "2", "2"))  # exact duplicate
    records.append(record(f"Riddle: {leaked}?", "The answer is 9.", "9"))
    records.append(record("Say hello.", "As an AI language model, hello.", "Hello!"))
    benchmark = {"name": "riddles", "path": str(bench), "fields": ["question"]}
    return records, benchmark


COMBINATIONS = [
    ["length", "heuristics"],
    ["dedup", "decontam"],
    ["consistency", "dedup"],
    ["heuristics", "decontam", "consistency", "dedup", "length"],
]


@pytest.mark.parametrize("types", COMBINATIONS, ids="+".join)
def test_kept_plus_rejected_equals_input_by_id(tmp_path: Path, types: list[str]) -> None:
    records, benchmark = corpus(tmp_path)
    filters = [{"type": t, **({"benchmarks": [benchmark]} if t == "decontam" else {})}
               for t in types]  # fmt: skip
    result, kept, rejected = run_filters(tmp_path, filters, records)
    ids_in = [r["id"] for r in records]
    ids_out = [r["id"] for r in kept] + [r["id"] for r in rejected]
    assert sorted(ids_out) == sorted(ids_in)  # exact duplicates share an id: counted twice
    assert result.records_in == len(records) == result.records_out + len(rejected)
    assert all(r["reject"]["filter"] in types and r["reject"]["reason"] for r in rejected)
    for name in types:
        stats = result.stats["filters"][name]
        assert stats["seen"] == stats["kept"] + stats["rejected"]


def test_planted_problems_are_rejected_by_the_right_filter(tmp_path: Path) -> None:
    records, benchmark = corpus(tmp_path)
    filters = [
        {"type": "heuristics"},
        {"type": "decontam", "benchmarks": [benchmark], "n": 8},
        {"type": "dedup"},
        {"type": "consistency", "min": 0.9},
    ]
    _, kept, rejected = run_filters(tmp_path, filters, records)
    reasons = {(r["instruction"].strip(), r["reject"]["filter"]) for r in rejected}
    assert ("Say hello.", "heuristics") in reasons
    assert any(f == "decontam" and i.startswith("Riddle") for i, f in reasons)
    assert ("Question 1: what is 1 plus 1?", "dedup") in reasons
    # i % 3 == 0 disagree in one of three samples: agreement 2/3 < 0.9
    assert {i for i, f in reasons if f == "consistency"} == {
        f"Question {i}: what is {i} plus {i}?" for i in (3, 6, 9, 12)
    }
    assert len(kept) == 8
    assert all(r["selection"]["by"] == "consistency" for r in kept)


def test_percentile_thresholds_hold_records_until_every_score_is_in(tmp_path: Path) -> None:
    records = [
        record(f"Q{i}?", *(["The answer is 1."] * (i + 1) + ["The answer is 2."] * (9 - i)))
        for i in range(10)
    ]  # agreement rises 0.5, 0.6, ... 1.0, then 0.6 ... (majority flips at i=4)
    _, kept, rejected = run_filters(tmp_path, [{"type": "consistency", "min": "p50"}], records)
    agreements = sorted(r["scores"]["consistency"]["agreement"] for r in kept + rejected)
    cut = (agreements[4] + agreements[5]) / 2
    assert all(r["scores"]["consistency"]["agreement"] >= cut for r in kept)
    assert all(r["scores"]["consistency"]["agreement"] < cut for r in rejected)
    assert rejected[0]["reject"]["reason"].endswith("(p50)")


def test_stdout_output_writes_no_rejected_file_unless_asked(tmp_path: Path, cli_env) -> None:
    source = tmp_path / "in.jsonl"
    write_jsonl(source, RECORDS)
    config = config_with(tmp_path, [{"type": "heuristics"}])
    done = subprocess.run(
        [sys.executable, "-m", "distillpipe", "filter", "-c", str(config), "-i", str(source),
         "-o", "-", "-q"],
        env=cli_env, capture_output=True, text=True, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 4  # heuristics leaves truncation to length
    assert not list(tmp_path.glob("*rejected*"))


@pytest.mark.slow
def test_run_chains_generate_and_filter_with_stats_in_the_manifest(tmp_path: Path) -> None:
    import orjson
    from support import small_llamacpp_config

    from distillpipe.pipeline import run_pipeline

    source = tmp_path / "prompts.jsonl"
    write_jsonl(source, [{"instruction": f"Name a colour number {i}."} for i in range(3)])
    data = {**small_llamacpp_config(), "filter": [{"type": "length"}, {"type": "heuristics"}]}
    config = load_config(write_config(tmp_path / "config.yaml", data))
    run_dir = tmp_path / "run"
    results = run_pipeline(config, run_dir, source)
    assert [result.name for result, _ in results] == ["generate", "filter"]
    kept = list(read_jsonl(run_dir / "filter.jsonl"))
    rejected = list(read_jsonl(run_dir / "filter.rejected.jsonl"))
    assert len(kept) + len(rejected) == 3  # max_tokens 8: truncated responses are rejected
    manifest = orjson.loads((run_dir / "manifest.json").read_bytes())
    stats = manifest["stages"]["filter"]["stats"]["filters"]
    assert stats["length"]["seen"] == 3
    assert set(stats["length"]["quantiles"]) == {"p0", "p10", "p25", "p50", "p75", "p90", "p100"}


def test_quantiles_past_the_reservoir_come_from_a_seeded_uniform_sample():
    first, second = FilterStats("length", seed=3), FilterStats("length", seed=3)
    first.add_values(float(value) for value in range(200_000))
    for start in range(0, 200_000, 256):  # batch boundaries do not change the sample
        second.add_values(float(value) for value in range(start, min(start + 256, 200_000)))
    quantiles = first.as_dict()["quantiles"]
    assert len(first.sample) == 10_000
    assert quantiles == second.as_dict()["quantiles"]  # the same seed draws the same sample
    for q in (10, 25, 50, 75, 90):
        assert abs(quantiles[f"p{q}"] - q / 100 * 200_000) < 0.02 * 200_000
