"""Cost: the price table, token counts and the --max-cost guard (``estimate``: test_estimate.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from api_runs import api_config, generate
from fault_server import FaultServer
from support import paid_generate_config

from distillpipe.config import PriceConfig
from distillpipe.errors import BudgetExceededError
from distillpipe.teachers.base import Request, SamplingParams
from distillpipe.teachers.cost import BudgetGuard, Price, find_price, prompt_tokens
from distillpipe.teachers.ledger import SpendLedger

RECORDS = 20


def test_dated_snapshots_find_their_row_by_the_longest_prefix():
    assert find_price("gpt-4o-mini-2024-07-18") == Price(0.15, 0.60)
    assert find_price("gpt-4o-2024-08-06") == Price(2.50, 10.00)
    assert find_price("claude-3-5-haiku-20241022") == Price(0.80, 4.00)
    assert find_price("my-finetune") is None


def test_config_prices_override_the_built_in_table():
    assert find_price("gpt-4o-mini", {"gpt-4o-mini": Price(1, 2)}) == Price(1, 2)


def test_batch_mode_bills_half():
    assert Price(2.0, 8.0).cost(1_000_000, 1_000_000, batch=True) == pytest.approx(5.0)


def test_prompt_tokens_use_the_model_encoding_plus_chat_framing():
    chat = Request("q", SamplingParams(), ({"role": "user", "content": "hello world"},))
    assert prompt_tokens(chat, "gpt-4o-mini", "openai") == 2 + 3 + 3
    raw = Request("q", SamplingParams(), prompt="hello world")
    assert prompt_tokens(raw, "gpt-4o-mini", "openai") == 2


def expensive_config(server: FaultServer):
    config = api_config(server, concurrency=4)
    config.cost.prices = {"gpt-4o-mini": PriceConfig(input=1000.0, output=1000.0)}  # $1e-3/token
    return config


def test_the_budget_guard_stops_before_the_limit_and_the_run_resumes(
    fault_server: FaultServer, tmp_path: Path
):
    config = expensive_config(fault_server)
    config.generate.batch_size = 3  # several dispatch batches in flight when the guard trips
    guard = BudgetGuard(0.2)
    with pytest.raises(BudgetExceededError, match=r"--max-cost 0\.2 USD reached"):
        generate(config, tmp_path, RECORDS, budget=guard)
    assert 0 < guard.spent <= 0.2
    assert guard.reserved == pytest.approx(0.0, abs=1e-9)
    paid = len(fault_server.answered)
    assert 0 < paid < RECORDS
    assert not (tmp_path / "out.jsonl").exists()

    result, records = generate(config, tmp_path, RECORDS, budget=BudgetGuard(10.0))
    assert len(records) == RECORDS
    assert result.stats["teacher"]["cache_hits"] == paid
    assert set(fault_server.answered.values()) == {1}, "a paid call was sent again"
    assert result.stats["teacher"]["cost_usd"] == pytest.approx(
        sum(
            (
                r["responses"][0]["usage"]["prompt_tokens"]
                + r["responses"][0]["usage"]["completion_tokens"]
            )
            for r in records
        )
        * 1e-3
        - guard.spent
    )


def test_a_rerun_with_the_same_cap_spends_at_most_what_the_ledger_leaves(
    fault_server: FaultServer, tmp_path: Path
):
    config = expensive_config(fault_server)
    config.generate.batch_size = 3
    path = tmp_path / "spend.jsonl"
    first = BudgetGuard(0.2, SpendLedger(path))
    with pytest.raises(BudgetExceededError):
        generate(config, tmp_path, RECORDS, budget=first)
    assert SpendLedger(path).before == {"generate": pytest.approx(first.spent)}

    again = BudgetGuard(0.2, SpendLedger(path))
    assert again.spent_before == pytest.approx(first.spent)
    with pytest.raises(BudgetExceededError, match=r"of it by earlier runs"):
        generate(config, tmp_path, RECORDS, budget=again)
    assert first.spent + again.spent <= 0.2
    assert SpendLedger(path).total_before() == pytest.approx(first.spent + again.spent)

    done = BudgetGuard(10.0, SpendLedger(path))
    _, records = generate(config, tmp_path, RECORDS, budget=done)
    assert set(fault_server.answered.values()) == {1}, "a paid call was sent again"
    usages = [record["responses"][0]["usage"] for record in records]
    paid = sum(u["prompt_tokens"] + u["completion_tokens"] for u in usages) * 1e-3
    assert SpendLedger(path).total_before() == pytest.approx(paid)
    assert done.as_dict()["by_stage"]["generate"] == {
        "before_usd": pytest.approx(first.spent + again.spent, abs=1e-6),
        "now_usd": pytest.approx(paid - first.spent - again.spent, abs=1e-6),
    }


def test_without_a_cap_the_ledger_still_records_what_was_spent(
    fault_server: FaultServer, tmp_path: Path
):
    config = expensive_config(fault_server)
    meter = BudgetGuard(None, SpendLedger(tmp_path / "spend.jsonl"))
    result, _ = generate(config, tmp_path, 3, budget=meter)
    assert meter.left() is None
    spent = SpendLedger(tmp_path / "spend.jsonl").before["generate"]
    assert spent == pytest.approx(result.stats["teacher"]["cost_usd"]) and spent > 0


def test_the_budget_guard_holds_in_batch_mode(fault_server: FaultServer, tmp_path: Path):
    config = expensive_config(fault_server)
    config.teacher.mode = "batch"
    config.generate.batch_size = 100
    guard = BudgetGuard(0.1)
    with pytest.raises(BudgetExceededError):
        generate(config, tmp_path, RECORDS, budget=guard, state_dir=tmp_path / "b")
    [batch] = fault_server.batches.values()
    assert 0 < len(batch["items"]) < RECORDS
    assert guard.spent <= 0.1


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "distillpipe", *args], capture_output=True, env=env, timeout=120
    )


def write_cli_config(tmp_path: Path, server: FaultServer, **teacher: object) -> Path:
    return paid_generate_config(tmp_path, f"{server.url}/v1", RECORDS, **teacher)


def test_max_cost_on_the_command_line_is_one_line_and_exit_1(
    fault_server: FaultServer, tmp_path: Path, cli_env: dict[str, str]
):
    config = write_cli_config(tmp_path, fault_server)
    # -q: no progress lines, so stderr holds the error alone however slow the machine is
    run = cli("generate", "-q", "-c", str(config), "-i", str(tmp_path / "in.jsonl"),
              "-o", str(tmp_path / "out.jsonl"), "--max-cost", "1", env=cli_env)  # fmt: skip
    assert run.returncode == 1
    error = run.stderr.decode().strip().splitlines()
    assert len(error) == 1 and "--max-cost 1 USD reached" in error[0]
    assert not (tmp_path / "out.jsonl").exists()
    done = cli("generate", "-c", str(config), "-i", str(tmp_path / "in.jsonl"),
               "-o", str(tmp_path / "out.jsonl"), env=cli_env)  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    assert "$" in done.stderr.decode()  # the summary's cost column


def test_estimate_counts_as_cached_what_generate_cached_and_nothing_for_another_model(
    fault_server: FaultServer, tmp_path: Path, cli_env: dict[str, str]
):
    config = write_cli_config(tmp_path, fault_server)
    fault_server.models = [{"id": "gpt-4o-mini", "root": "/models/one"}]
    done = cli("generate", "-c", str(config), "-i", str(tmp_path / "in.jsonl"),
               "-o", str(tmp_path / "out.jsonl"), env=cli_env)  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()

    def cached() -> int:
        run = cli("estimate", str(config), "--json", env=cli_env)
        assert run.returncode == 0, run.stderr.decode()
        (stage,) = [s for s in json.loads(run.stdout)["stages"] if s["stage"] == "generate"]
        return stage["calls_cached"]

    assert cached() == 2 * RECORDS
    fault_server.models = [{"id": "gpt-4o-mini", "root": "/models/two"}]  # the server changed
    assert cached() == 0
