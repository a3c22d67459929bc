"""Rejection sampling (generate.until) against the fault server's scripted model: each
sample's answer is fixed by its sampling seed, and so by its sample index."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from fault_server import FaultServer
from killing import kill_after, start
from support import without_answer_times, write_config

from distillpipe.config import ConfigSource, load_config, parse_config
from distillpipe.errors import ConfigError
from distillpipe.io import read_jsonl, read_records, write_jsonl
from distillpipe.runner import run_stage
from distillpipe.stages import stage_named

PROMPTS = [
    {"instruction": f"What is {a} + {b}? Answer with a number.", "reference": str(a + b)}
    for a, b in [(2, 2), (3, 4), (5, 1), (6, 6), (1, 8), (7, 2)]
] + [{"instruction": "What is 1 + 1? Answer with a number. (never right)", "reference": "2"}]


def scripted(body: dict[str, Any]) -> str:
    """Right for one seed in three, never for the 'never right' prompt."""
    question = body["messages"][-1]["content"]
    a, b = (int(word.rstrip("?")) for word in question.split()[2:5:2])
    right = body["seed"] % 3 == 0 and "never" not in question
    return f"The answer is {a + b if right else a + b + 1}."


def config_data(server: FaultServer, **until: Any) -> dict[str, Any]:
    teacher = {"backend": "openai", "model": "gpt-4o-mini", "base_url": f"{server.url}/v1",
               "api_key": "sk-test", "mode": "chat", "max_retries": 0,
               "concurrency": 2}  # fmt: skip
    return {
        "name": "t",
        "seed": 3,
        "teacher": teacher,
        "generate": {"max_tokens": 16, "batch_size": 3,
                     "until": {"filter": "reference", "k": 1, "max_samples": 8, "step": 2,
                               **until}},
        "filter": [{"type": "reference"}],
    }  # fmt: skip


def correct(response: dict[str, Any], record: dict[str, Any]) -> bool:
    return response["text"].removeprefix("The answer is ").rstrip(".") == record["reference"]


@pytest.mark.parametrize("k", [1, 2])
def test_each_record_is_sampled_in_rounds_until_k_pass_or_max_samples(
    fault_server: FaultServer, tmp_path: Path, k: int
):
    fault_server.answer = scripted
    config = parse_config(config_data(fault_server, k=k), ConfigSource("t.yaml", None))
    write_jsonl(tmp_path / "in.jsonl", PROMPTS)
    stage, rejected_path = stage_named("generate"), tmp_path / "o.rejected.jsonl"
    result = run_stage(
        stage, config, tmp_path / "in.jsonl", tmp_path / "o.jsonl", rejected_path=rejected_path
    )

    kept = list(read_records(tmp_path / "o.jsonl"))
    rejected = list(read_jsonl(tmp_path / "o.rejected.jsonl"))
    assert len(kept) + len(rejected) == len(PROMPTS)
    assert {r["instruction"] for r in rejected} >= {PROMPTS[-1]["instruction"]}
    for record in kept:
        responses = record["responses"]
        passes = [i for i, r in enumerate(responses) if correct(r, record)]
        assert [r["sample"] for r in responses] == list(range(len(responses)))
        assert len(responses) % 2 == 0 and len(responses) <= 8
        assert len(passes) >= k  # reached k ...
        assert sum(i < len(responses) - 2 for i in passes) < k  # ... in its last round
        assert record["sampling"] == {"filter": "reference", "drawn": len(responses),
                                      "passed": passes}  # fmt: skip
    for record in rejected:
        assert len(record["responses"]) == 8
        assert sum(correct(r, record) for r in record["responses"]) < k
        assert record["reject"]["filter"] == "reference"
        assert record["reject"]["score"]["drawn"] == 8
    assert rejected[-1]["reject"]["reason"] == "no sample of 8 passed reference"
    assert any(len(r["responses"]) > 2 for r in kept), "no record needed a second round"

    drawn = sum(len(r["responses"]) for r in kept + rejected)
    assert len(fault_server.received) == result.stats["teacher"]["teacher_calls"] == drawn
    stats = result.stats["until"]
    assert (stats["kept"], stats["rejected"], stats["samples"]) == (len(kept), len(rejected), drawn)
    assert stats["samples_per_kept"] == round(drawn / len(kept), 4)
    rates = [
        sum(correct(x, r) for x in r["responses"]) / len(r["responses"]) for r in kept + rejected
    ]
    assert stats["pass@1"] == pytest.approx(sum(rates) / len(rates), abs=1e-4)
    assert 0 < stats["pass@1"] <= stats["pass@8"] <= 1

    again = run_stage(stage_named("generate"), config, tmp_path / "in.jsonl", tmp_path / "p.jsonl")
    assert again.stats["teacher"]["teacher_calls"] == 0
    assert len(fault_server.received) == drawn  # the rerun asked nothing
    assert (tmp_path / "o.jsonl").read_bytes() == (tmp_path / "p.jsonl").read_bytes()


def test_a_killed_run_resumes_sending_only_the_missing_samples(
    fault_server: FaultServer, tmp_path: Path
):
    fault_server.answer = scripted
    fault_server.latency = 0.05
    data = config_data(fault_server)
    data["teacher"]["concurrency"] = 1
    write_config(tmp_path / "config.yaml", data)
    write_jsonl(tmp_path / "in.jsonl", PROMPTS)

    def args(output: str) -> list[str]:
        return ["generate", "-c", str(tmp_path / "config.yaml"), "-i", str(tmp_path / "in.jsonl"),
                "-o", str(tmp_path / f"{output}.jsonl")]  # fmt: skip

    cache = tmp_path / "cache"
    first = start(tmp_path, args("out"), cache, tmp_path / "1.log", "first")
    cached = kill_after(first, cache, 5, tmp_path / "first.stderr")
    assert not (tmp_path / "out.jsonl").exists()
    time.sleep(10 * fault_server.latency)  # the server finishes the request the killed run left

    before = len(fault_server.received)
    second = start(tmp_path, args("out"), cache, tmp_path / "2.log", "second")
    assert second.wait(timeout=300) == 0, (tmp_path / "second.stderr").read_text()
    resumed_sent = len(fault_server.received) - before

    before = len(fault_server.received)
    clean = start(tmp_path, args("clean"), tmp_path / "clean-cache", tmp_path / "3.log", "clean")
    assert clean.wait(timeout=300) == 0, (tmp_path / "clean.stderr").read_text()
    total = len(fault_server.received) - before

    assert total > cached >= 5
    assert resumed_sent == total - cached
    for suffix in (".jsonl", ".rejected.jsonl"):
        assert without_answer_times(tmp_path / f"out{suffix}") == without_answer_times(
            tmp_path / f"clean{suffix}"
        )


def test_until_must_name_a_filter_that_judges_samples(fault_server: FaultServer, tmp_path: Path):
    def error(data: dict[str, Any]) -> str:
        with pytest.raises(ConfigError) as caught:
            load_config(write_config(tmp_path / "c.yaml", data))
        return str(caught.value)

    data = config_data(fault_server, filter="answers")
    assert "generate.until.filter: no filter named 'answers' in `filter:` (named: reference)" in (
        error(data)
    )
    data = config_data(fault_server, filter="length")
    data["filter"] = [{"type": "length"}]
    assert "'length' cannot decide which samples pass: a length filter judges whole" in error(data)
    data = config_data(fault_server, filter="reward")
    data["filter"] = [{"type": "reward", "backend": "judge", "min": "p50"}]
    assert "`min` is a percentile of the whole run" in error(data)
    data = config_data(fault_server)
    data["generate"]["n"] = 4
    assert "generate.n: not used with generate.until" in error(data)
    data = config_data(fault_server, k=9)
    assert "k (9) exceeds max_samples (8)" in error(data)


def test_a_one_member_panel_samples_until_as_a_single_teacher_does(
    fault_server: FaultServer, tmp_path: Path
):
    fault_server.answer = scripted
    data = config_data(fault_server)
    data["teachers"] = [{"name": "only", **data.pop("teacher")}]
    write_jsonl(tmp_path / "in.jsonl", PROMPTS)
    config = parse_config(data, ConfigSource("t.yaml", None))
    run_stage(stage_named("generate"), config, tmp_path / "in.jsonl", tmp_path / "o.jsonl")
    kept = list(read_records(tmp_path / "o.jsonl"))
    assert kept and all("sampling" in record for record in kept)
    assert any(len(record["responses"]) > 2 for record in kept)  # later rounds were drawn
