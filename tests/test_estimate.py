"""``distillpipe estimate``: the resume plan of a run — per stage, the teacher calls the
cache holds and those a run would send, their tokens and cost — with nothing sent.

The teacher is the fault server, priced through ``cost.prices``, scripted to
answer like a model: Self-Instruct gets two new tasks a request, a rewrite a new
instruction, the equality check "Equal" now and then, the judge a rating. A
plan is then held against what a real run sends, stage by stage.
"""

from __future__ import annotations

import hashlib
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from fault_server import FaultServer
from support import paid_generate_config
from typer.testing import CliRunner

from distillpipe.cli import app
from distillpipe.config import ConfigSource, load_config, parse_config
from distillpipe.errors import BudgetExceededError
from distillpipe.estimate import Plan, StagePlan, plan_run
from distillpipe.pipeline import run_pipeline
from distillpipe.teachers.cost import BudgetGuard

SEEDS = ["Name three fruits that are red.", "Explain why the sky is blue.", "Write a haiku."]
TARGET, PER_ROUND, MAX_ROUNDS = 5, 2, 4
EVOLVE_ROUNDS, N = 2, 2
USD_PER_TOKEN = 1e-3  # 1000 USD per million
STAGES = ["seed", "evolve", "generate", "filter"]


def words(seed: str, count: int) -> str:
    rng = random.Random(seed)
    return " ".join(
        "".join(rng.choice("bdfgklmnprstvz") + rng.choice("aeiou") for _ in range(3))
        for _ in range(count)
    )


def scripted(body: dict[str, Any]) -> str | None:
    prompt = body["messages"][-1]["content"]
    digest = hashlib.sha256(prompt.encode()).hexdigest()
    if prompt.startswith("I am collecting a varied set of tasks"):
        return "\n".join(f"{i}. Explain {words(digest + str(i), 7)}." for i in (1, 2))
    if prompt.startswith(("Rewrite the prompt below", "Take the prompt below")):
        return f"Describe {words(digest, 8)} in detail."
    if prompt.startswith("Here are two prompts."):
        return "Equal" if digest[0] in "0123" else "Different"
    if prompt.startswith("Please act as an impartial judge"):
        return "Clear enough. Rating: [[7]]"
    return None  # generate, the answer check: the echo


@pytest.fixture
def server(fault_server: FaultServer) -> FaultServer:
    fault_server.answer = scripted
    return fault_server


def config_data(server: FaultServer, tmp_path: Path) -> dict[str, Any]:
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_bytes(b"".join(orjson.dumps({"instruction": s}) + b"\n" for s in SEEDS))
    return {
        "name": "plan",
        "seed": 7,
        "input": str(seeds),
        "run_dir": str(tmp_path / "runs"),
        "teacher": {
            "backend": "openai",
            "model": "teacher-model",
            "base_url": f"{server.url}/v1",
            "api_key": "sk-test-secret",
            "concurrency": 4,
            "retry_backoff": 0.02,
        },
        "self_instruct": {
            "target": TARGET,
            "requests_per_round": PER_ROUND,
            "max_rounds": MAX_ROUNDS,
            "new_tasks_per_request": 2,
            "seed_tasks_per_prompt": 2,
            "machine_tasks_per_prompt": 1,
            "max_tokens": 64,
            "max_words": 20,
        },
        "evolve": {
            "rounds": EVOLVE_ROUNDS,
            "max_tokens": 32,
            "output": "all",
            "elimination": {"equality": "teacher", "answer_check": True, "answer_max_tokens": 24},
        },
        "generate": {"n": N, "max_tokens": 16},
        "filter": [{"type": "reward", "backend": "judge", "max_tokens": 12}],
        "cost": {"prices": {"teacher-model": {"input": 1000.0, "output": 1000.0}}},
    }


def load(data: dict[str, Any]):
    return parse_config(data, ConfigSource("test.yaml", None))


def paths(config) -> tuple[Path, Path]:
    return Path(config.run_dir) / config.name, Path(config.input)


def plan_of(config) -> tuple[Plan, dict[str, StagePlan]]:
    plan = plan_run(config, *paths(config))
    return plan, {row.stage: row for row in plan.stages}


def sent(server: FaultServer) -> int:
    return sum(server.answered.values())


def run_stage_by_stage(config, server: FaultServer) -> dict[str, int]:
    """What a real run sends to the teacher in each stage."""
    counts = {}
    for stage in STAGES:
        before = sent(server)
        run_pipeline(config, *paths(config), to_stage=stage)
        counts[stage] = sent(server) - before
    return counts


def records_in(path: Path) -> int:
    return len(path.read_bytes().splitlines())


def test_a_fresh_plan_counts_every_teacher_stage_at_its_bound_and_the_run_stays_within_it(
    server: FaultServer, tmp_path: Path, private_cache_dir: Path
):
    config = load(config_data(server, tmp_path))
    plan, rows = plan_of(config)
    assert not server.attempts, "estimate must send nothing"
    assert not private_cache_dir.exists(), "nor make a cache"
    assert [row.stage for row in plan.stages] == STAGES
    seeded = len(SEEDS) + TARGET  # Self-Instruct writes the seeds and at most TARGET tasks
    evolved = seeded * (1 + EVOLVE_ROUNDS)  # output all: each original and every survivor
    assert rows["seed"].calls_to_send == MAX_ROUNDS * PER_ROUND
    assert rows["evolve"].calls_to_send == seeded * EVOLVE_ROUNDS * 3  # rewrite, equality, answer
    assert rows["generate"].calls_to_send == evolved * N
    assert rows["filter"].calls_to_send == evolved * N  # the judge: one call per sample
    assert not any(row.exact or row.done or row.calls_cached for row in plan.stages)
    for row in plan.stages:
        assert row.prompt_tokens > 0
        assert row.cost_usd == pytest.approx(
            (row.prompt_tokens + row.output_tokens) * USD_PER_TOKEN
        )
    assert rows["generate"].output_tokens == evolved * N * 16
    assert plan.total.calls_to_send == sum(row.calls_to_send for row in plan.stages)

    real = run_stage_by_stage(config, server)
    assert all(0 < real[row.stage] <= row.calls_to_send for row in plan.stages), real
    assert real["seed"] < rows["seed"].calls_to_send  # the target came before max_rounds


def test_b_after_an_interruption_the_plan_subtracts_the_cache_and_the_rerun_sends_it_exactly(
    server: FaultServer, tmp_path: Path
):
    config = load(config_data(server, tmp_path))
    run_dir, seeds = paths(config)
    run_pipeline(config, run_dir, seeds, to_stage="evolve")
    evolved = records_in(run_dir / "evolve.jsonl")
    _, rows = plan_of(config)
    assert rows["seed"].done and rows["evolve"].done
    assert rows["seed"].calls_to_send == rows["evolve"].calls_to_send == 0
    assert (rows["generate"].calls_to_send, rows["generate"].exact) == (evolved * N, True)
    assert rows["generate"].tokens_exact
    # the judge reads responses not yet generated: one call per sample, at most
    assert (rows["filter"].calls_to_send, rows["filter"].exact) == (evolved * N, False)

    before = sent(server)  # interrupted mid-generate: a budget for a few calls
    with pytest.raises(BudgetExceededError):
        run_pipeline(config, run_dir, seeds, budget=BudgetGuard(0.15))
    paid = sent(server) - before
    assert 0 < paid < evolved * N
    _, rows = plan_of(config)
    assert not rows["generate"].done
    assert rows["generate"].calls_cached == paid
    assert rows["generate"].calls_to_send == evolved * N - paid and rows["generate"].exact
    assert rows["filter"].calls_to_send <= evolved * N and not rows["filter"].exact

    before = sent(server)
    run_pipeline(config, run_dir, seeds, to_stage="generate")
    assert sent(server) - before == rows["generate"].calls_to_send
    _, rows = plan_of(config)
    assert rows["generate"].done
    assert rows["filter"].exact and rows["filter"].tokens_exact
    before = sent(server)
    run_pipeline(config, run_dir, seeds)
    assert sent(server) - before == rows["filter"].calls_to_send > 0
    plan, _ = plan_of(config)
    assert all(row.done for row in plan.stages) and plan.total.calls_to_send == 0


def test_a_stage_replayed_from_the_cache_alone_is_exact_and_the_finished_stages_after_it_stay_done(
    server: FaultServer, tmp_path: Path
):
    config = load(config_data(server, tmp_path))
    run_dir, seeds = paths(config)
    run_pipeline(config, run_dir, seeds)
    manifest = orjson.loads((run_dir / "manifest.json").read_bytes())
    del manifest["stages"]["seed"]  # the run directory forgot it: run would redo it
    (run_dir / "manifest.json").write_bytes(orjson.dumps(manifest))
    before = sent(server)
    plan, rows = plan_of(config)
    assert sent(server) == before
    seed = rows["seed"]
    assert (seed.done, seed.calls_to_send, seed.exact, seed.tokens_exact) == (False, 0, True, True)
    assert seed.calls_cached > 0
    # its replay writes what the run wrote, so the stages after it are still finished
    assert [row.done for row in plan.stages] == [False, True, True, True]


def test_the_plan_never_starts_a_managed_server(server: FaultServer, tmp_path: Path):
    data = config_data(server, tmp_path)
    marker = tmp_path / "started"
    data["teacher"] = {
        "backend": "openai",
        "model": "teacher-model",
        "base_url": "http://127.0.0.1:9/v1",
        "launch": {"command": [sys.executable, "-c", f"open({str(marker)!r}, 'w')"]},
    }
    data["cost"] = {}  # a server on this machine: free
    plan, rows = plan_of(load(data))
    assert rows["generate"].calls_to_send > 0
    assert not marker.exists()
    assert plan.price_source == "local teacher" and plan.total.cost_usd == 0.0


def test_without_a_known_price_the_cost_is_unknown_and_says_which_key_to_set(
    server: FaultServer, tmp_path: Path
):
    data = config_data(server, tmp_path)
    data["teacher"]["base_url"] = "https://api.example.com/v1"
    data["cost"] = {}
    plan, _ = plan_of(load(data))
    assert plan.price is None and plan.total.cost_usd is None
    assert plan.price_source == "unknown: add cost.prices.teacher-model to the config"


# -- the command ------------------------------------------------------------------------

RECORDS = 20


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "distillpipe", *args], capture_output=True, env=env, timeout=120
    )


def write_cli_config(tmp_path: Path, server: FaultServer, **teacher: object) -> Path:
    return paid_generate_config(tmp_path, f"{server.url}/v1", RECORDS, **teacher)


def test_the_command_prints_the_table_counts_requests_and_tokens_and_calls_no_api(
    fault_server: FaultServer, tmp_path: Path, cli_env: dict[str, str]
):
    config = write_cli_config(tmp_path, fault_server)
    run = cli("estimate", str(config), env=cli_env)
    assert run.returncode == 0, run.stderr.decode()
    out = run.stdout.decode()
    assert not fault_server.attempts, "estimate must not call the API"
    assert "1000 in, 1000 out USD per 1M tokens (config cost.prices)" in out
    [row] = [line.split() for line in out.splitlines() if line.startswith("generate")]
    _, status, cached, to_send, tokens, at_most, output, at_most_cost, cost = row
    assert (status, cached, to_send) == ("runs", "0", f"{2 * RECORDS}")  # exact: no ≤
    assert (at_most, output, at_most_cost) == ("≤", f"{2 * RECORDS * 100:,}", "≤")
    assert 2 * RECORDS * 10 < int(tokens.replace(",", "")) < 2 * RECORDS * 40
    assert float(cost) == pytest.approx((int(tokens.replace(",", "")) + 4000) * USD_PER_TOKEN)


def test_json_says_the_same_and_after_a_run_every_call_is_cached(
    fault_server: FaultServer, tmp_path: Path
):
    config = write_cli_config(tmp_path, fault_server)
    data = orjson.loads(CliRunner().invoke(app, ["estimate", str(config), "--json"]).stdout)
    assert data["total"]["calls_to_send"] == 2 * RECORDS and data["total"]["exact"]
    assert data["price"] == {"input": 1000.0, "output": 1000.0, "batch_discount": 0.5}
    loaded = load_config(config)
    run_pipeline(loaded, Path(loaded.run_dir) / loaded.name, tmp_path / "in.jsonl")
    assert len(fault_server.answered) == 2 * RECORDS
    (Path(loaded.run_dir) / loaded.name / "manifest.json").unlink()  # replayed, not skipped
    data = orjson.loads(CliRunner().invoke(app, ["estimate", str(config), "--json"]).stdout)
    [generate] = data["stages"]
    assert (generate["calls_cached"], generate["calls_to_send"]) == (2 * RECORDS, 0)
    assert generate["cost_usd"] == 0.0 and generate["exact"]
    assert len(fault_server.answered) == 2 * RECORDS


def test_anthropic_counts_say_they_are_approximate_and_need_no_api_key(
    fault_server: FaultServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    config = write_cli_config(tmp_path, fault_server)
    data = yaml.safe_load(config.read_text())
    data["teacher"] = {"backend": "anthropic", "model": "claude-3-5-haiku-20241022"}
    config.write_text(yaml.safe_dump(data))
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    run = CliRunner().invoke(app, ["estimate", str(config)])
    assert run.exit_code == 0, run.output
    assert "approximate: Anthropic publishes no tokenizer" in run.stdout
    assert "(prices.yaml)" in run.stdout
