"""`executor: ray` on a real local Ray (2 CPUs) with the real llama.cpp teacher.

One Ray session serves the whole module (starting Ray costs seconds). The
in-process tests use it directly; the kill test's driver is a `distillpipe`
subprocess that joins it by address, as a driver joins an existing cluster,
so killing the driver leaves the cluster up — the realistic failure.

The resume test counts what the teacher was asked inside the Ray actors with
the spy of tests/test_resume.py, put on the actors' PYTHONPATH through the
config's own ``executor.runtime_env``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray
from fault_server import FaultServer
from support import small_llamacpp_config, without_answer_times, write_config
from test_resume import SPY, backend_log, cached_completions

from distillpipe.config import load_config
from distillpipe.errors import BudgetExceededError, ConfigError, FatalTeacherError
from distillpipe.executors import executor_for
from distillpipe.executors.local import LocalExecutor
from distillpipe.executors.ray import RayExecutor, pool_size
from distillpipe.executors.ray_filter import split_evenly
from distillpipe.executors.ray_worker import (
    call_from_row,
    call_to_row,
    config_for_actor,
    most_actors,
    with_actor_threads,
)
from distillpipe.filters.base import build_filter
from distillpipe.filters.perplexity import PerplexityOptions
from distillpipe.io import read_records, write_jsonl
from distillpipe.pipeline import run_pipeline
from distillpipe.stages import stage_named
from distillpipe.structured import ResponseFormat
from distillpipe.teachers.base import Call, Request, SamplingParams
from distillpipe.teachers.cost import BudgetGuard
from distillpipe.teachers.ledger import SpendLedger

# A model-based filter with a percentile cut (scores on actors, the cut fitted on the
# driver over the whole run) and dedup (stateful decisions on the driver, in order).
FILTER_CHAIN = [
    {"type": "dedup", "on": "prompt", "near": False},
    {"type": "length", "response": {"min_chars": 3}, "reject_truncated": False},
    {"type": "perplexity", "n_ctx": 256, "max": "p80"},
    {"type": "heuristics", "responses": "all"},
]


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=150 * 1024 * 1024,
    )
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def by_id(path: Path) -> dict[str, dict]:
    """The records by id, less when the teacher answered (each executor has its own cache)."""
    return {record["id"]: record for record in without_answer_times(path)} if path.exists() else {}


def prompts(count: int, topic: str) -> list[dict]:
    return [{"instruction": f"Write a short slogan for {topic} number {i}."} for i in range(count)]


def test_executor_key_takes_a_name_or_a_section(tmp_path: Path):
    base = small_llamacpp_config()
    assert load_config(write_config(tmp_path / "a.yaml", base)).executor.type == "local"
    named = load_config(write_config(tmp_path / "b.yaml", {**base, "executor": "ray"}))
    assert isinstance(executor_for(named), RayExecutor)
    section = {**base, "executor": {"type": "ray", "actors": 3, "num_cpus": 2}}
    options = load_config(write_config(tmp_path / "c.yaml", section)).executor
    assert (options.type, options.actors, options.num_cpus) == ("ray", 3, 2.0)
    assert isinstance(executor_for(load_config(tmp_path / "a.yaml")), LocalExecutor)
    with pytest.raises(ConfigError, match=r"d\.yaml:\d+: executor\.type"):
        load_config(write_config(tmp_path / "d.yaml", {**base, "executor": "spark"}))


def test_ray_refuses_a_disabled_cache_before_starting_anything(tmp_path: Path):
    data = {**small_llamacpp_config(), "executor": "ray", "cache": {"enabled": False}}
    config = load_config(write_config(tmp_path / "config.yaml", data))
    write_jsonl(tmp_path / "in.jsonl", prompts(1, "florist"))
    with pytest.raises(ConfigError, match=r"executor: ray needs cache\.enabled: true"):
        executor_for(config).run_stage(
            stage_named("generate"), config, tmp_path / "in.jsonl", tmp_path / "out.jsonl"
        )
    assert not (tmp_path / "out.jsonl").exists()


def test_a_call_crosses_to_an_actor_and_back_unchanged():
    params = SamplingParams(temperature=0.3, max_tokens=9, stop=("###", "\n\n"), top_logprobs=2)
    for request in (
        Request(id="r1", params=params, prompt="Say hi.", n=3),
        Request(id="r2", params=params, messages=({"role": "user", "content": "Hi"},)),
        Request(id="r3", params=params, prompt="JSON:", response_format=ResponseFormat.of("json")),
        Request(id="r5", params=params, prompt="Say hi.", teacher="strong"),
        Request(
            id="r4",
            params=params,
            prompt="JSON:",
            response_format=ResponseFormat.of(
                {"type": "object", "properties": {"b": {}, "a": {}}, "required": ["b", "a"]}
            ),
        ),
    ):
        call = Call(request, sample=2, key="sha256:" + "ab" * 32, seed=12345)
        row = call_to_row(call)
        assert set(row) == {"key", "call"} and all(isinstance(v, str) for v in row.values())
        assert call_from_row(row["key"], row["call"]) == call


def test_an_engine_on_an_actor_gets_the_actors_cpus_as_threads(tmp_path: Path):
    config = load_config(write_config(tmp_path / "a.yaml", small_llamacpp_config()))
    assert config.teacher.n_threads is None
    assert config_for_actor(config, 3).teacher.n_threads == 3
    config.teacher.n_threads = 8
    assert config_for_actor(config, 3).teacher.n_threads == 8
    perplexity = build_filter(with_actor_threads(PerplexityOptions(type="perplexity"), 1.5), config)
    assert perplexity.options.n_threads == 1


def api_config_data(server: FaultServer, **teacher: object) -> dict:
    return {
        "name": "ray-api",
        "seed": 1,
        "teacher": {
            "backend": "openai",
            "model": "gpt-4o-mini",
            "base_url": f"{server.url}/v1",
            "api_key": "sk-test-secret",
            "retry_backoff": 0.02,
            **teacher,
        },
        "generate": {"n": 1, "max_tokens": 16},
        "cost": {"prices": {"gpt-4o-mini": {"input": 1000.0, "output": 1000.0}}},  # $1e-3/token
    }


def test_an_api_teachers_limits_are_the_runs_split_among_the_actors(
    tmp_path: Path, fault_server: FaultServer
):
    data = api_config_data(fault_server, concurrency=7, rpm=600, tpm=100_001)
    config = load_config(write_config(tmp_path / "a.yaml", data))
    shares = [config_for_actor(config, 1, actor, 3).teacher for actor in range(3)]
    assert [t.concurrency for t in shares] == [3, 2, 2]
    assert [t.rpm for t in shares] == [200, 200, 200]
    assert [t.tpm for t in shares] == [33_334, 33_334, 33_333]
    assert config.teacher.concurrency == 7, "the driver's own config is left alone"
    # no more actors than can each get a share of the smallest limit
    assert most_actors(config.teacher) == 7
    options = config.executor.model_copy(update={"actors": 16})
    assert pool_size(None, options, batches=100, most=most_actors(config.teacher)) == 7
    assert most_actors(config.teacher.model_copy(update={"concurrency": 64, "rpm": None})) == 64


def test_batches_split_across_scorers_in_order():
    items = [{"id": str(i)} for i in range(7)]
    slices = split_evenly(items, 3)
    assert [len(part) for part in slices] == [3, 2, 2]
    assert [item for part in slices for item in part] == items
    assert split_evenly(items[:1], 3) == [items[:1], [], []]


@pytest.mark.slow
def test_generate_and_filters_on_ray_equal_the_local_executor(
    tmp_path: Path, ray_address: str
) -> None:
    source = tmp_path / "in.jsonl"
    duplicate = {"instruction": "WRITE a short slogan for bakery number 2!"}
    write_jsonl(source, [*prompts(6, "bakery"), duplicate])
    runs = {}
    for executor in ("local", "ray"):
        data = small_llamacpp_config(max_tokens=6, temperature=0.9, batch_size=4)
        data["cache"] = {"path": str(tmp_path / f"{executor}-cache.sqlite")}
        data["filter"] = FILTER_CHAIN
        data["executor"] = {"type": executor, "actors": 2, "batch_size": 2}
        config = load_config(write_config(tmp_path / f"{executor}.yaml", data))
        run_dir = tmp_path / executor
        results = run_pipeline(config, run_dir, source)
        runs[executor] = (run_dir, {result.name: result for result, _ in results})

    (local_dir, _), (ray_dir, ray_results) = runs["local"], runs["ray"]
    for name in ("generate.jsonl", "filter.jsonl", "filter.rejected.jsonl"):
        assert by_id(ray_dir / name) == by_id(local_dir / name), name
    assert len(by_id(ray_dir / "generate.jsonl")) == 7
    kept, rejected = by_id(ray_dir / "filter.jsonl"), by_id(ray_dir / "filter.rejected.jsonl")
    assert len(kept) + len(rejected) == 7
    assert all(set(record["scores"]) >= {"length", "perplexity"} for record in kept.values())
    rejected_by = {record["reject"]["filter"] for record in rejected.values()}
    assert {"perplexity", "dedup"} <= rejected_by, rejected_by

    generate = ray_results["generate"].stats
    assert generate["executor"] == {
        **generate["executor"],
        "calls": 7,
        "cached": 0,
        "sent": 7,
        "actors": 2,
    }
    assert generate["teacher"]["teacher_calls"] == 7
    assert generate["teacher"]["cache_hits"] == 0
    shipped = ray_results["filter"].stats["executor"]["filters_on_actors"]
    assert shipped == ["dedup", "length", "perplexity", "heuristics"]


def ray_generate(tmp_path: Path, config: Path, output: str, cache_dir: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "distillpipe", "generate", "-q", "--executor", "ray",
               "-c", str(config), "-i", str(tmp_path / "in.jsonl"),
               "-o", str(tmp_path / output)]  # fmt: skip
    env = {**os.environ, "DISTILLPIPE_CACHE_DIR": str(cache_dir)}
    with (tmp_path / f"{output}.stderr").open("ab") as stderr:
        return subprocess.Popen(command, env=env, stderr=stderr)


def spied_config(tmp_path: Path, ray_address: str, log: Path, name: str) -> Path:
    spy_dir = tmp_path / "spy"
    spy_dir.mkdir(exist_ok=True)
    (spy_dir / "sitecustomize.py").write_text(SPY)
    data = small_llamacpp_config(max_tokens=6, temperature=0.8)
    data["executor"] = {
        "address": ray_address,
        "actors": 2,
        "batch_size": 1,
        "runtime_env": {"env_vars": {"PYTHONPATH": str(spy_dir), "BACKEND_LOG": str(log)}},
    }
    return write_config(tmp_path / name, data)


@pytest.mark.slow
def test_a_killed_ray_driver_resumes_asking_only_for_missing_requests(
    tmp_path: Path, ray_address: str
) -> None:
    total = 12
    write_jsonl(tmp_path / "in.jsonl", prompts(total, "cafe"))
    cache_dir, first_log, second_log = tmp_path / "cache", tmp_path / "1.log", tmp_path / "2.log"

    first_config = spied_config(tmp_path, ray_address, first_log, "first.yaml")
    first = ray_generate(tmp_path, first_config, "out.jsonl", cache_dir)
    deadline = time.monotonic() + 300
    while cached_completions(cache_dir) < 4:
        assert first.poll() is None, (tmp_path / "out.jsonl.stderr").read_text()
        assert time.monotonic() < deadline, "the first driver made no progress"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert not (tmp_path / "out.jsonl").exists(), "a killed driver must leave no output"
    committed = cached_completions(cache_dir)
    assert 4 <= committed < total
    assert len(backend_log(first_log, "asked")) >= committed

    second_config = spied_config(tmp_path, ray_address, second_log, "second.yaml")
    second = ray_generate(tmp_path, second_config, "out.jsonl", cache_dir)
    assert second.wait(timeout=600) == 0, (tmp_path / "out.jsonl.stderr").read_text()
    asked_again = backend_log(second_log, "asked")
    assert len(asked_again) == total - committed
    assert len(set(asked_again)) == len(asked_again)
    committed_prompts = set(backend_log(first_log, "answered"))
    assert len(set(asked_again) & committed_prompts) <= len(committed_prompts) - committed

    resumed = list(read_records(tmp_path / "out.jsonl"))
    assert len({record["id"] for record in resumed}) == total
    assert all(len(record["responses"]) == 1 for record in resumed)


@pytest.mark.slow
def test_a_fatal_teacher_error_on_an_actor_names_the_request(tmp_path: Path, ray_address: str):
    too_long = {"instruction": "Summarise: " + " ".join(f"word{i}" for i in range(300))}
    write_jsonl(tmp_path / "in.jsonl", [*prompts(1, "florist"), too_long])
    data = {**small_llamacpp_config(), "executor": {"type": "ray", "actors": 1}}
    data["teacher"]["n_ctx"] = 128
    config = load_config(write_config(tmp_path / "config.yaml", data))
    bad_id = list(read_records(tmp_path / "in.jsonl"))[1]["id"]
    with pytest.raises(FatalTeacherError, match=f"^request {bad_id}: .*context"):
        executor_for(config).run_stage(
            stage_named("generate"), config, tmp_path / "in.jsonl", tmp_path / "out.jsonl"
        )
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.slow
def test_the_driver_holds_one_budget_across_the_actors_and_a_rerun_spends_only_the_remainder(
    tmp_path: Path, ray_address: str, fault_server: FaultServer
):
    total = 20
    write_jsonl(tmp_path / "in.jsonl", prompts(total, "tearoom"))
    data = api_config_data(fault_server, concurrency=4)
    data["cache"] = {"path": str(tmp_path / "cache.sqlite")}
    data["executor"] = {"type": "ray", "actors": 2, "batch_size": 2}
    config = load_config(write_config(tmp_path / "config.yaml", data))
    ledger = tmp_path / "spend.jsonl"

    def generate(guard: BudgetGuard):
        return executor_for(config).run_stage(
            stage_named("generate"), config, tmp_path / "in.jsonl", tmp_path / "out.jsonl",
            budget=guard,
        )  # fmt: skip

    first = BudgetGuard(0.2, SpendLedger(ledger))
    with pytest.raises(BudgetExceededError, match=r"--max-cost 0\.2 USD reached"):
        generate(first)
    assert not (tmp_path / "out.jsonl").exists()
    paid = len(fault_server.answered)
    assert 0 < paid < total
    assert 0 < first.spent <= 0.2 and first.reserved == pytest.approx(0.0, abs=1e-9)
    assert SpendLedger(ledger).total_before() == pytest.approx(first.spent)

    again = BudgetGuard(0.2, SpendLedger(ledger))
    with pytest.raises(BudgetExceededError, match="by earlier runs"):
        generate(again)
    assert first.spent + again.spent <= 0.2

    done = BudgetGuard(10.0, SpendLedger(ledger))
    result = generate(done)
    records = list(read_records(tmp_path / "out.jsonl"))
    assert len(records) == total
    assert set(fault_server.answered.values()) == {1}, "a paid call was sent again"
    usages = [record["responses"][0]["usage"] for record in records]
    all_paid = sum(u["prompt_tokens"] + u["completion_tokens"] for u in usages) * 1e-3
    cost = result.stats["teacher"]["cost_usd"]
    assert cost == pytest.approx(all_paid - first.spent - again.spent) and cost > 0
    assert cost == pytest.approx(done.spent)
    assert result.stats["executor"]["cost_usd"] == pytest.approx(cost, abs=1e-6)
    assert SpendLedger(ledger).total_before() == pytest.approx(all_paid)


def test_a_panel_on_ray_asks_each_member_on_its_own_actors_and_equals_the_local_run(
    tmp_path: Path, ray_address: str, fault_server: FaultServer
) -> None:
    source = tmp_path / "in.jsonl"
    write_jsonl(source, prompts(3, "florist"))
    teachers = [
        {"name": "cold", "backend": "llamacpp", "mode": "completion", "n_ctx": 512,
         "sampling": {"temperature": 0.2}},
        {"name": "paid", "backend": "openai", "model": "gpt-4o-mini", "n": 2,
         "base_url": f"{fault_server.url}/v1", "retry_backoff": 0.02},
    ]  # fmt: skip
    runs = {}
    for executor in ("local", "ray"):
        data = {
            "name": "panel",
            "seed": 7,
            "teachers": teachers,
            "generate": {"n": 1, "max_tokens": 6},
            "cache": {"path": str(tmp_path / f"{executor}-cache.sqlite")},
            "executor": {"type": executor, "actors": 2, "batch_size": 2},
            "cost": {"prices": {"gpt-4o-mini": {"input": 1.0, "output": 1.0}}},
        }
        config = load_config(write_config(tmp_path / f"{executor}.yaml", data))
        results = run_pipeline(config, tmp_path / executor, source)
        runs[executor] = {result.name: result for result, _ in results}
    assert by_id(tmp_path / "ray" / "generate.jsonl") == by_id(
        tmp_path / "local" / "generate.jsonl"
    )
    for record in by_id(tmp_path / "ray" / "generate.jsonl").values():
        assert [r["teacher"] for r in record["responses"]] == ["cold", "paid", "paid"]
    stats = runs["ray"]["generate"].stats
    assert (stats["executor"]["calls"], stats["executor"]["sent"]) == (9, 9)
    assert {name: row["sent"] for name, row in stats["executor"]["members"].items()} == {
        "cold": 3, "paid": 6
    }  # fmt: skip
    members = stats["teachers"]
    assert (members["cold"]["teacher_calls"], members["cold"]["cache_hits"]) == (3, 0)
    assert (members["paid"]["teacher_calls"], members["paid"]["cache_hits"]) == (6, 0)
    assert members["paid"]["cost_usd"] > 0
    assert len(fault_server.received) == 2 * 6  # each executor asked the paid member once a call


def test_a_panel_members_max_cost_holds_on_ray_inside_the_runs_budget(
    tmp_path: Path, ray_address: str, fault_server: FaultServer
) -> None:
    total = 12
    write_jsonl(tmp_path / "in.jsonl", prompts(total, "bakery"))
    data = api_config_data(fault_server)
    member = {"name": "paid", **data.pop("teacher"), "max_cost": 0.1}
    data["teachers"] = [member]
    data["cache"] = {"path": str(tmp_path / "cache.sqlite")}
    data["executor"] = {"type": "ray", "actors": 2, "batch_size": 2}
    config = load_config(write_config(tmp_path / "config.yaml", data))
    guard = BudgetGuard(10.0, SpendLedger(tmp_path / "spend.jsonl"))
    with pytest.raises(BudgetExceededError, match=r"teachers: paid: max_cost 0\.1 USD reached"):
        executor_for(config).run_stage(
            stage_named("generate"), config, tmp_path / "in.jsonl", tmp_path / "out.jsonl",
            budget=guard,
        )  # fmt: skip
    assert 0 < len(fault_server.answered) < total
    assert 0 < guard.spent <= 0.1  # the member's spending is the run's too, on the ledger
    assert SpendLedger(tmp_path / "spend.jsonl").before_by_teacher == {
        "paid": pytest.approx(guard.spent)
    }
