"""generate with a panel of teachers: the embedded llama.cpp gemma, the same gemma behind
a real llama.cpp server (other sampling, other n) and the fault server (an OpenAI wire
format). Every record gets every member's samples, tagged with the member; a run killed
mid-way resumes asking no completed call again, counted per teacher; a member added to a
finished run is the only one asked; a cheap member writes the Self-Instruct tasks,
another answers them and the cheap one judges, in one `distillpipe run`."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from fault_server import FaultServer
from killing import kill_after, start
from support import write_config, write_records
from test_resume import backend_log

from distillpipe.config import load_config
from distillpipe.pipeline import run_pipeline
from distillpipe.report import write_report

RECORDS = 6


def embedded(name: str = "small", **keys: object) -> dict:
    return {"name": name, "backend": "llamacpp", "mode": "completion", "n_ctx": 512, **keys}


def served(base_url: str, name: str = "server", **keys: object) -> dict:
    return {"name": name, "backend": "openai", "model": "gemma", "base_url": base_url, **keys}


def faulty(base_url: str, name: str = "fault", **keys: object) -> dict:
    return {
        "name": name,
        "backend": "openai",
        "model": "gpt-4o-mini",
        "base_url": f"{base_url}/v1",
        "retry_backoff": 0.02,
        **keys,
    }


def panel_config(tmp_path: Path, teachers: list[dict], **extra: object) -> Path:
    data = {
        "name": "panel",
        "seed": 11,
        "input": str(tmp_path / "in.jsonl"),
        "run_dir": str(tmp_path / "runs"),
        "teachers": teachers,
        "generate": {"n": 1, "max_tokens": 8, "temperature": 0.7},
        "cost": {"prices": {"gpt-4o-mini": {"input": 1.0, "output": 1.0}}},
        **extra,
    }
    return write_config(tmp_path / "config.yaml", data)


def rows(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def manifest(run_dir: Path) -> dict:
    return orjson.loads((run_dir / "manifest.json").read_bytes())


@pytest.fixture
def slow_fault_server() -> FaultServer:
    """Slow enough (one call at a time, 0.4 s each) for a kill to land mid-run."""
    server = FaultServer(latency=0.4).start()
    yield server
    server.stop()


@pytest.mark.slow
def test_a_killed_panel_run_resumes_asking_no_completed_call_again_per_teacher(
    tmp_path: Path, llama_server: str, slow_fault_server: FaultServer
):
    write_records(tmp_path / "in.jsonl", RECORDS)
    teachers = [
        embedded(sampling={"temperature": 0.2}),
        served(llama_server, n=2, sampling={"temperature": 1.1, "top_p": 0.9}),
        faulty(slow_fault_server.url, concurrency=1),
    ]
    config = panel_config(tmp_path, teachers)
    args = ["run", str(config)]
    cache, first_log, second_log = tmp_path / "cache", tmp_path / "1.log", tmp_path / "2.log"
    first = start(tmp_path, args, cache, first_log, "first")
    done = kill_after(first, cache, 3, tmp_path / "first.stderr")
    time.sleep(1.0)  # a call the fault server took before the kill is answered to no one
    answered_by_fault = sum(slow_fault_server.answered.values())
    answered_before_kill = set(backend_log(first_log, "answered"))
    total = RECORDS * (1 + 2 + 1)
    assert done < total

    second = start(tmp_path, args, cache, second_log, "second")
    assert second.wait(timeout=600) == 0, (tmp_path / "second.stderr").read_text()

    out = rows(tmp_path / "runs" / "panel" / "generate.jsonl")
    assert [r["id"] for r in out] == [f"r{i}" for i in range(RECORDS)]
    for record in out:
        tags = [(r["teacher"], r["sample"]) for r in record["responses"]]
        assert tags == [("small", 0), ("server", 0), ("server", 1), ("fault", 0)]
        by = {r["teacher"]: r["provenance"] for r in record["responses"]}
        assert by["small"]["backend"] == "llamacpp" and by["small"]["endpoint"] is None
        assert by["small"]["params"]["temperature"] == 0.2
        assert by["server"]["params"]["temperature"] == 1.1
        assert by["server"]["params"]["top_p"] == 0.9
        assert by["fault"]["endpoint"] == slow_fault_server.url.removeprefix("http://")
        assert all(r["text"] is not None for r in record["responses"])

    stats = manifest(tmp_path / "runs" / "panel")["stages"]["generate"]["stats"]["teachers"]
    assert {name: row["calls"] for name, row in stats.items()} == {
        "small": RECORDS, "server": 2 * RECORDS, "fault": RECORDS
    }  # fmt: skip
    for row in stats.values():
        assert row["cache_hits"] + row["teacher_calls"] == row["calls"]
    assert sum(row["cache_hits"] for row in stats.values()) == done
    assert sum(row["teacher_calls"] for row in stats.values()) == total - done
    # per teacher: what the resumed run sent is what that teacher was asked again
    asked_again = backend_log(second_log, "asked")
    assert len(asked_again) == stats["small"]["teacher_calls"]
    assert len(set(asked_again) & answered_before_kill) <= 1  # the one killed mid-commit
    fault_again = sum(slow_fault_server.answered.values()) - answered_by_fault
    assert fault_again == stats["fault"]["teacher_calls"]
    assert sum(count - 1 for count in slow_fault_server.answered.values()) <= 1
    assert stats["fault"]["cost_usd"] > 0 and stats["small"]["cost_usd"] == 0


@pytest.mark.slow
def test_a_teacher_added_to_a_finished_run_is_the_only_one_asked(
    tmp_path: Path, llama_server: str, fault_server: FaultServer
):
    write_records(tmp_path / "in.jsonl", 3)
    write_records(tmp_path / "seeds.jsonl", 2)
    two = [embedded(), served(llama_server, sampling={"temperature": 1.0})]
    extra = {"self_instruct": {"teacher": "small", "target": 0}, "export": {"format": "messages"}}
    config = load_config(panel_config(tmp_path, two, **extra))
    run_dir = tmp_path / "runs" / "panel"
    run_pipeline(config, run_dir, tmp_path / "seeds.jsonl")
    before = manifest(run_dir)["stages"]

    three = [*two, faulty(fault_server.url, n=2)]
    config = load_config(panel_config(tmp_path, three, **extra))
    results = run_pipeline(config, run_dir, tmp_path / "seeds.jsonl")
    after = manifest(run_dir)["stages"]

    ran = {result.name: not skipped for result, skipped in results}
    assert ran == {"seed": False, "generate": True, "export": True}
    assert after["seed"]["config_hash"] == before["seed"]["config_hash"]
    hashes_before, hashes_after = (s["generate"]["teacher_hashes"] for s in (before, after))
    assert {k: hashes_after[k] for k in hashes_before} == hashes_before
    assert set(hashes_after) - set(hashes_before) == {"fault"}
    teachers = after["generate"]["stats"]["teachers"]
    assert teachers["small"]["teacher_calls"] == teachers["server"]["teacher_calls"] == 0
    assert teachers["small"]["cache_hits"] == teachers["server"]["cache_hits"] == 2
    assert teachers["fault"]["teacher_calls"] == 2 * 2 and len(fault_server.received) == 4
    out = rows(run_dir / "generate.jsonl")
    assert all([r["teacher"] for r in record["responses"]] == ["small", "server", "fault", "fault"]
               for record in out)  # fmt: skip
    wins = after["export"]["stats"]["export"]["teacher_wins"]
    assert wins["small"] == {"records": 2, "chosen": 2, "win_rate": 1.0}  # no selection: first
    card = (run_dir / "export" / "README.md").read_text()
    assert "## Teachers" in card and "| fault | openai | gpt-4o-mini |" in card

    html = write_report(run_dir).read_text()
    assert 'id="teachers"' in html and 'data-plot="teacher-wins"' in html
    assert "<td>fault</td><td>openai</td><td>gpt-4o-mini</td>" in html

    removed = load_config(panel_config(tmp_path, two, **extra))
    results = run_pipeline(removed, run_dir, tmp_path / "seeds.jsonl")
    teachers = manifest(run_dir)["stages"]["generate"]["stats"]["teachers"]
    assert set(teachers) == {"small", "server"}
    assert all(row["teacher_calls"] == 0 for row in teachers.values())
    assert len(fault_server.received) == 4


@pytest.mark.slow
def test_a_cheap_teacher_writes_the_instructions_and_another_answers_them(
    tmp_path: Path, llama_server: str, cli_env: dict
):
    seeds = [
        {"id": f"s{i}", "instruction": text}
        for i, text in enumerate(
            [
                "Write a haiku about the sea.",
                "Name three primary colors.",
                "Explain what a noun is.",
            ]
        )
    ]
    (tmp_path / "seeds.jsonl").write_bytes(b"".join(orjson.dumps(s) + b"\n" for s in seeds))
    teachers = [
        embedded("cheap", share=0),
        served(llama_server, "strong", sampling={"temperature": 0.3}),
    ]
    self_instruct = {
        "teacher": "cheap",
        "target": 2,
        "requests_per_round": 1,
        "max_rounds": 2,
        "max_tokens": 48,
        "seed_tasks_per_prompt": 3,
    }
    judge = {"type": "reward", "backend": "judge", "teacher": "cheap", "max_tokens": 6,
             "on_unparseable": "keep"}  # fmt: skip
    config = panel_config(
        tmp_path,
        teachers,
        self_instruct=self_instruct,
        filter=[judge],
        input=str(tmp_path / "seeds.jsonl"),
    )
    done = subprocess.run(
        [sys.executable, "-m", "distillpipe", "run", str(config), "-q"],
        env=cli_env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    stages = manifest(tmp_path / "runs" / "panel")["stages"]
    seed_teachers = stages["seed"]["stats"]["teachers"]
    assert set(seed_teachers) == {"cheap"} and seed_teachers["cheap"]["teacher_calls"] >= 1
    assert set(stages["generate"]["stats"]["teachers"]) == {"strong"}
    assert list(stages["seed"]["teacher_hashes"]) == ["cheap"]
    assert list(stages["generate"]["teacher_hashes"]) == ["strong"]
    judged = stages["filter"]["stats"]["teachers"]  # the judge is a member of its own
    assert set(judged) == {"cheap"} and judged["cheap"]["calls"] == stages["filter"]["records_in"]
    assert list(stages["filter"]["teacher_hashes"]) == ["cheap"]
    out = rows(tmp_path / "runs" / "panel" / "generate.jsonl")
    assert len(out) >= len(seeds)
    for record in out:
        (response,) = record["responses"]
        assert response["teacher"] == "strong"
        assert response["provenance"]["backend"] == "openai"
        assert response["provenance"]["params"]["temperature"] == 0.3
