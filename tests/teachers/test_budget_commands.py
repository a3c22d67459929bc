"""``--max-cost`` on every command that can call a paid teacher, and across reruns.

Each command runs as a real subprocess against the fault server (a paid
OpenAI-compatible API: loopback is free unless ``cost.prices`` prices the
model). Each one stops before its cap with one line and no output, records
what it spent in its ledger, spends at most the remainder when rerun with the
same cap, and finishes with a higher one without paying for any call twice.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from fault_server import FaultServer
from support import write_config
from test_resume import cached_completions

from distillpipe.io import write_jsonl
from distillpipe.teachers.ledger import SpendLedger

USD_PER_TOKEN = 1e-4
PRICES = {"gpt-4o-mini": {"input": 1e6 * USD_PER_TOKEN, "output": 1e6 * USD_PER_TOKEN}}


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "distillpipe", *args], capture_output=True, env=env, timeout=180
    )


def priced_config(tmp_path: Path, server: FaultServer, **sections: object) -> Path:
    data = {
        "name": "budget",
        "seed": 3,
        "run_dir": str(tmp_path / "runs"),
        "teacher": {
            "backend": "openai",
            "model": "gpt-4o-mini",
            "base_url": f"{server.url}/v1",
            "api_key": "sk-test-secret",
            "concurrency": 2,
            "retry_backoff": 0.02,
        },
        "generate": {"n": 1, "max_tokens": 16},
        "cost": {"prices": PRICES},
        **sections,
    }
    return write_config(tmp_path / "config.yaml", data)


def instructions(count: int) -> list[dict]:
    topics = ["a lighthouse", "tax forms", "sourdough", "a chess opening", "tide pools",
              "a violin", "bus timetables", "glaciers", "compost", "solar panels"]  # fmt: skip
    return [
        {"instruction": f"Explain {topics[i % len(topics)]} to a curious child, case {i}."}
        for i in range(count)
    ]


def cache_cost(cache_dir: Path) -> float:
    """What every completion in the cache cost at PRICES (each was paid for once)."""
    db = sqlite3.connect(cache_dir / "cache.sqlite")
    try:
        usages = [
            orjson.loads(value)["usage"] for (value,) in db.execute("SELECT value FROM completions")
        ]
    finally:
        db.close()
    return sum(u["prompt_tokens"] + u["completion_tokens"] for u in usages) * USD_PER_TOKEN


def stops_resumes_within_the_cap_then_finishes(
    command: list[str],
    output: Path,
    cap: float,
    server: FaultServer,
    env: dict[str, str],
    cache_dir: Path,
) -> None:
    ledger = output.parent / f".{output.name}.spend.jsonl"
    stopped = cli(*command, "-q", "--max-cost", str(cap), env=env)
    assert stopped.returncode == 1, stopped.stderr.decode()
    error = stopped.stderr.decode().strip().splitlines()
    assert len(error) == 1 and f"--max-cost {cap:g} USD reached" in error[0], error
    assert not output.exists()
    spent_first = SpendLedger(ledger).total_before()
    assert 0 < spent_first <= cap

    again = cli(*command, "-q", "--max-cost", str(cap), env=env)
    assert again.returncode == 1, again.stderr.decode()
    assert "by earlier runs" in again.stderr.decode()
    assert not output.exists()
    spent_both = SpendLedger(ledger).total_before()
    assert spent_first <= spent_both <= cap, "the rerun spent more than the remainder"

    done = cli(*command, "--max-cost", "100", env=env)
    assert done.returncode == 0, done.stderr.decode()
    assert output.exists()
    assert set(server.answered.values()) == {1}, "a paid call was sent again"
    summary = done.stderr.decode()
    assert f"spent before: {spent_both:,.4f} USD" in summary
    assert "budget left:" in summary
    assert SpendLedger(ledger).total_before() == pytest.approx(cache_cost(cache_dir))


def test_seed_stops_before_the_cap_and_a_rerun_spends_at_most_the_remainder(
    fault_server: FaultServer, tmp_path: Path, cli_env: dict[str, str], private_cache_dir: Path
):
    write_jsonl(tmp_path / "seeds.jsonl", instructions(10))
    self_instruct = {"target": 50, "requests_per_round": 4, "max_rounds": 5, "max_tokens": 64}
    config = priced_config(tmp_path, fault_server, self_instruct=self_instruct)
    output = tmp_path / "seed.jsonl"
    command = ["seed", "-c", str(config), "-i", str(tmp_path / "seeds.jsonl"), "-o", str(output)]
    stops_resumes_within_the_cap_then_finishes(
        command, output, 0.1, fault_server, cli_env, private_cache_dir
    )


def test_evolve_stops_before_the_cap_and_a_rerun_spends_at_most_the_remainder(
    fault_server: FaultServer, tmp_path: Path, cli_env: dict[str, str], private_cache_dir: Path
):
    write_jsonl(tmp_path / "in.jsonl", instructions(6))
    evolve = {
        "rounds": 2,
        "batch_size": 6,
        "max_tokens": 32,
        "elimination": {"equality_max_tokens": 4, "answer_max_tokens": 16},
    }
    config = priced_config(tmp_path, fault_server, evolve=evolve)
    output = tmp_path / "evolved.jsonl"
    command = ["evolve", "-c", str(config), "-i", str(tmp_path / "in.jsonl"), "-o", str(output)]
    stops_resumes_within_the_cap_then_finishes(
        command, output, 0.1, fault_server, cli_env, private_cache_dir
    )


def test_a_judge_filter_stops_before_the_cap_and_a_rerun_spends_at_most_the_remainder(
    fault_server: FaultServer, tmp_path: Path, cli_env: dict[str, str], private_cache_dir: Path
):
    answered = [
        {**record, "responses": [{"text": f"Answer {i}a."}, {"text": f"Answer {i}b."}]}
        for i, record in enumerate(instructions(8))
    ]
    write_jsonl(tmp_path / "in.jsonl", answered)
    judge = {"type": "reward", "backend": "judge", "max_tokens": 16, "on_unparseable": "keep"}
    config = priced_config(tmp_path, fault_server, filter=[judge])
    output = tmp_path / "judged.jsonl"
    command = ["filter", "-c", str(config), "-i", str(tmp_path / "in.jsonl"), "-o", str(output)]
    stops_resumes_within_the_cap_then_finishes(
        command, output, 0.05, fault_server, cli_env, private_cache_dir
    )
    assert len(fault_server.answered) == 16  # one judge call per response, each paid once


def test_run_keeps_its_ledger_in_the_run_directory_and_its_manifest_shows_the_spending(
    fault_server: FaultServer, tmp_path: Path, cli_env: dict[str, str], private_cache_dir: Path
):
    write_jsonl(tmp_path / "in.jsonl", instructions(20))
    config = priced_config(tmp_path, fault_server, input="in.jsonl")
    run_dir = tmp_path / "runs" / "budget"
    stopped = cli("run", str(config), "-q", "--max-cost", "0.05", env=cli_env)
    assert stopped.returncode == 1, stopped.stderr.decode()
    spent_first = SpendLedger(run_dir / "spend.jsonl").before["generate"]
    assert 0 < spent_first <= 0.05

    done = cli("run", str(config), "--max-cost", "100", env=cli_env)
    assert done.returncode == 0, done.stderr.decode()
    assert f"spent before: {spent_first:,.4f} USD" in done.stderr.decode()
    spend = orjson.loads((run_dir / "manifest.json").read_bytes())["spend"]
    assert spend["max_cost"] == 100
    assert spend["before_usd"] == pytest.approx(spent_first, abs=1e-6)
    assert spend["before_usd"] + spend["now_usd"] == pytest.approx(
        cache_cost(private_cache_dir), abs=1e-6
    )
    assert spend["by_stage"]["generate"]["now_usd"] == pytest.approx(spend["now_usd"], abs=1e-6)
    assert spend["left_usd"] == pytest.approx(100 - cache_cost(private_cache_dir), abs=1e-6)


def test_a_run_killed_with_sigkill_has_recorded_what_it_spent_and_its_rerun_counts_it(
    fault_server: FaultServer, tmp_path: Path, cli_env: dict[str, str], private_cache_dir: Path
):
    fault_server.latency = 0.05
    write_jsonl(tmp_path / "in.jsonl", instructions(60))
    config = priced_config(tmp_path, fault_server)
    output = tmp_path / "out.jsonl"
    command = ["generate", "-q", "-c", str(config), "-i", str(tmp_path / "in.jsonl"),
               "-o", str(output)]  # fmt: skip
    process = subprocess.Popen([sys.executable, "-m", "distillpipe", *command], env=cli_env)
    deadline = time.monotonic() + 120
    while cached_completions(private_cache_dir) < 6:
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not output.exists()

    ledger = tmp_path / ".out.jsonl.spend.jsonl"
    lines = ledger.read_bytes().splitlines()
    # every committed completion was recorded before it reached the cache; a line
    # more than the cache holds is a call paid for whose answer the kill lost
    assert (
        cached_completions(private_cache_dir) <= len(lines) <= sum(fault_server.answered.values())
    )
    spent = SpendLedger(ledger).total_before()
    assert spent >= cache_cost(private_cache_dir) > 0

    cap = f"{spent + 0.001:.6f}"  # less than one more call can cost
    rerun = cli(*command, "--max-cost", cap, env=cli_env)
    assert rerun.returncode == 1
    assert "by earlier runs" in rerun.stderr.decode()
    assert SpendLedger(ledger).total_before() <= float(cap)
