"""Provider batch APIs (``teacher.mode: batch``) against the fault server's batch endpoints.

The SDKs upload the request file, create the batch and read the results; the
journal in the run's state folder lets a killed run poll instead of resubmit,
and find on the provider a batch submitted just before the kill.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
import yaml
from api_runs import api_config, generate, write_records
from fault_server import FaultServer

from distillpipe.config import PROVIDER_BATCH_RECORDS
from distillpipe.errors import FatalTeacherError
from distillpipe.teachers.anthropic import AnthropicOptions, AnthropicTeacher
from distillpipe.teachers.batch import CLOCK_SKEW, AnthropicBatches
from distillpipe.teachers.batch_journal import JOURNAL, Submission

RECORDS = 12
EXPECTED = [f"echo: Say the number {i} in words." for i in range(RECORDS)]


def echoes(records: list[dict]) -> list[str]:
    return [record["responses"][0]["text"] for record in records]


def read_jsonl(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


@pytest.mark.parametrize("backend", ["openai", "anthropic"])
def test_a_batch_run_maps_results_back_to_records_and_the_cache(
    fault_server: FaultServer, tmp_path: Path, backend: str
):
    config = api_config(fault_server, backend, mode="batch")
    config.generate.batch_size = 100
    result, records = generate(config, tmp_path, RECORDS, state_dir=tmp_path / "batches")
    assert echoes(records) == EXPECTED
    assert len(fault_server.batches) == 1
    assert result.stats["teacher"]["teacher_calls"] == RECORDS
    intent, accepted = read_jsonl(tmp_path / "batches" / JOURNAL)
    assert len(intent["custom_ids"]) == RECORDS
    assert accepted == {"tag": intent["tag"], "batch_id": next(iter(fault_server.batches))}

    again, _ = generate(config, tmp_path, RECORDS, state_dir=tmp_path / "batches")
    assert again.stats["teacher"]["cache_hits"] == RECORDS
    assert len(fault_server.batches) == 1


@pytest.mark.parametrize("backend", ["openai", "anthropic"])
def test_failed_or_expired_items_are_retried_in_a_new_batch(
    fault_server: FaultServer, tmp_path: Path, backend: str
):
    fault_server.set_fault("batch_item_failures", fail_every=3)
    config = api_config(fault_server, backend, mode="batch")
    config.generate.batch_size = 100
    _, records = generate(config, tmp_path, RECORDS, state_dir=tmp_path / "batches")
    assert echoes(records) == EXPECTED
    _, second = fault_server.batches.values()
    assert 0 < len(second["items"]) < RECORDS
    assert max(fault_server.batch_items_seen.values()) == 2


def test_a_rejected_key_stops_a_batch_run_at_once(fault_server: FaultServer, tmp_path: Path):
    fault_server.set_fault("401")
    config = api_config(fault_server, "openai", mode="batch")
    with pytest.raises(FatalTeacherError, match=r"HTTP 401.*check the API key"):
        generate(config, tmp_path, 3, state_dir=tmp_path / "batches")


@pytest.mark.parametrize("backend", ["openai", "anthropic"])
def test_a_lost_submit_answer_is_looked_for_on_the_provider_not_paid_for_again(
    fault_server: FaultServer, tmp_path: Path, backend: str
):
    fault_server.set_fault("batch_answer_lost")  # registered, but the client reads a 503
    config = api_config(fault_server, backend, mode="batch")
    config.generate.batch_size = 100
    _, records = generate(config, tmp_path, RECORDS, state_dir=tmp_path / "batches")
    assert echoes(records) == EXPECTED
    assert fault_server.batch_submits == 1
    [batch_id] = fault_server.batches
    intent, adopted = read_jsonl(tmp_path / "batches" / JOURNAL)
    assert adopted == {"tag": intent["tag"], "batch_id": batch_id, "adopted": True}


def batch_run(
    tmp_path: Path, server: FaultServer, backend: str, cli_env: dict[str, str]
) -> tuple[list[str], dict[str, str]]:
    """The ``distillpipe run`` command of a batch-mode run over RECORDS records, and its env."""
    teacher = {
        "backend": backend,
        "model": "gpt-4o-mini" if backend == "openai" else "claude-3-5-haiku-20241022",
        "base_url": f"{server.url}/v1" if backend == "openai" else server.url,
        "api_key": "${TEST_API_KEY}",
        "mode": "batch",
        "poll_interval": 0.1,
    }
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "batchy",
                "input": "in.jsonl",
                "teacher": teacher,
                "generate": {"batch_size": 100, "max_tokens": 16},
            }
        )
    )
    write_records(tmp_path / "in.jsonl", RECORDS)
    command = [sys.executable, "-m", "distillpipe", "run", str(config), "--run-dir", "run"]
    return command, {**cli_env, "TEST_API_KEY": "sk-batch-secret"}


def wait_until(condition, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def rerun_to_the_end(tmp_path: Path, command: list[str], env: dict[str, str]) -> list[str]:
    """Run ``command`` again until it finishes; the texts of the records it wrote."""
    rerun = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr.decode()
    return echoes(read_jsonl(tmp_path / "run" / "generate.jsonl"))


@pytest.mark.parametrize("backend", ["openai", "anthropic"])
def test_a_killed_batch_run_resumes_by_polling_never_resubmitting(
    fault_server: FaultServer, tmp_path: Path, backend: str, cli_env: dict[str, str]
):
    fault_server.set_fault(None, batch_delay=-1)  # batches stay in progress until released
    command, env = batch_run(tmp_path, fault_server, backend, cli_env)
    first = subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not fault_server.batches and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # it is polling now
    os.kill(first.pid, signal.SIGKILL)
    first.wait(10)
    assert len(fault_server.batches) == 1
    assert (tmp_path / "run" / "batches" / JOURNAL).exists()
    assert not (tmp_path / "run" / "generate.jsonl").exists()

    fault_server.release_batches()
    assert rerun_to_the_end(tmp_path, command, env) == EXPECTED
    assert len(fault_server.batches) == 1, "the rerun resubmitted a batch"
    for path in (tmp_path / "run").rglob("*"):
        if path.is_file():
            assert b"sk-batch-secret" not in path.read_bytes(), path


@pytest.mark.parametrize("backend", ["openai", "anthropic"])
def test_a_run_killed_while_the_provider_answered_its_submit_adopts_that_batch(
    fault_server: FaultServer, tmp_path: Path, backend: str, cli_env: dict[str, str]
):
    # the provider registers the batch and holds its answer; one batch a page of its list
    fault_server.set_fault(None, submit_hold="after", batch_list_limit=1)
    command, env = batch_run(tmp_path, fault_server, backend, cli_env)
    first = subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.DEVNULL)
    wait_until(lambda: fault_server.held == 1)
    [ours] = fault_server.batches
    # meanwhile another client of the account submits a batch of the same size: the list
    # shows it first, so the search has to page on and tell the two apart
    stranger = fault_server.add_batch(backend, [f"stranger-{i}" for i in range(RECORDS)])
    os.kill(first.pid, signal.SIGKILL)
    first.wait(10)
    wait_until(lambda: fault_server.held == 0)
    [intent] = read_jsonl(tmp_path / "run" / "batches" / JOURNAL)  # noted before the submit
    assert sorted(intent["custom_ids"]) == sorted(
        item["custom_id"] for item in fault_server.batches[ours]["items"]
    )
    if backend == "openai":
        assert fault_server.batches[ours]["request"]["metadata"]["distillpipe_tag"] == intent["tag"]

    fault_server.set_fault(None, submit_hold=None)
    assert rerun_to_the_end(tmp_path, command, env) == EXPECTED
    assert fault_server.batch_submits == 1, "the rerun paid for the batch again"
    assert set(fault_server.batches) == {ours, stranger}
    journal = read_jsonl(tmp_path / "run" / "batches" / JOURNAL)
    assert journal[1:] == [{"tag": intent["tag"], "batch_id": ours, "adopted": True}]


@pytest.mark.parametrize("backend", ["openai", "anthropic"])
def test_a_run_killed_before_its_submit_reached_the_provider_submits_once_on_resume(
    fault_server: FaultServer, tmp_path: Path, backend: str, cli_env: dict[str, str]
):
    fault_server.set_fault(None, submit_hold="before")  # the request never gets in
    command, env = batch_run(tmp_path, fault_server, backend, cli_env)
    first = subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.DEVNULL)
    wait_until(lambda: fault_server.held == 1)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(10)
    wait_until(lambda: fault_server.held == 0)
    assert not fault_server.batches

    fault_server.set_fault(None, submit_hold=None)
    assert rerun_to_the_end(tmp_path, command, env) == EXPECTED
    [batch_id] = fault_server.batches
    lost, abandoned, intent, accepted = read_jsonl(tmp_path / "run" / "batches" / JOURNAL)
    assert abandoned == {"tag": lost["tag"], "abandoned": True}
    assert intent["custom_ids"] == lost["custom_ids"] and intent["tag"] != lost["tag"]
    assert accepted == {"tag": intent["tag"], "batch_id": batch_id}


def anthropic_candidates(server: FaultServer, intent: Submission, known: set[str]) -> list[str]:
    teacher = AnthropicTeacher(
        AnthropicOptions(model="claude-3-5-haiku-20241022", base_url=server.url, api_key="sk")
    )

    async def run() -> list[str]:
        provider = AnthropicBatches(teacher)
        try:
            return await provider.find(intent, known)
        finally:
            await provider.client.close()

    return asyncio.run(run())


def test_an_anthropic_batch_is_matched_by_size_and_time_and_once_ended_by_its_custom_ids(
    fault_server: FaultServer,
):
    fault_server.set_fault(None, batch_delay=-1)  # in progress until released
    intent = Submission("tag", ["a", "b", "c"], time.time())
    ours = fault_server.add_batch("anthropic", ["a", "b", "c"])
    stranger = fault_server.add_batch("anthropic", ["x", "y", "z"])
    fault_server.add_batch("anthropic", ["a", "b"])  # another size
    journaled = fault_server.add_batch("anthropic", ["p", "q", "r"])
    # in progress, a batch shows no custom ids: both may be ours, both are waited for
    assert anthropic_candidates(fault_server, intent, {journaled}) == [stranger, ours]
    later = Submission("tag", ["a", "b", "c"], time.time() + CLOCK_SKEW + 60)
    assert anthropic_candidates(fault_server, later, {journaled}) == []  # all made before it

    fault_server.release_batches()
    assert anthropic_candidates(fault_server, intent, {journaled}) == [ours]


@pytest.mark.parametrize("backend", ["openai", "anthropic"])
def test_batch_mode_puts_thousands_of_records_in_a_provider_batch_by_default(
    fault_server: FaultServer, backend: str
):
    assert api_config(fault_server, backend, mode="batch").generate.batch_size == (
        PROVIDER_BATCH_RECORDS
    )
    assert api_config(fault_server, backend).generate.batch_size == 64  # chat: small windows


def test_each_batch_member_of_a_panel_submits_its_own_provider_batch(
    fault_server: FaultServer, tmp_path: Path
):
    from distillpipe.config import ConfigSource, parse_config

    shared = {"api_key": "sk-test-secret", "mode": "batch", "poll_interval": 0.05}
    data = {
        "name": "api",
        "seed": 1,
        "teachers": [
            {
                "name": "gpt",
                "backend": "openai",
                "model": "gpt-4o-mini",
                "base_url": f"{fault_server.url}/v1",
                **shared,
            },
            {
                "name": "claude",
                "backend": "anthropic",
                "model": "claude-3-5-haiku-20241022",
                "base_url": fault_server.url,
                "n": 2,
                **shared,
            },
        ],
        "generate": {"n": 1, "max_tokens": 16, "batch_size": 100},
    }
    config = parse_config(data, ConfigSource("test.yaml", None))
    result, records = generate(config, tmp_path, RECORDS, state_dir=tmp_path / "batches")
    for record in records:
        assert [r["teacher"] for r in record["responses"]] == ["gpt", "claude", "claude"]
    assert len(fault_server.batches) == 2
    sizes = {}
    for member in ("gpt", "claude"):
        intent, accepted = read_jsonl(tmp_path / "batches" / member / JOURNAL)
        sizes[member] = len(intent["custom_ids"])
        assert accepted["batch_id"] in fault_server.batches
    assert sizes == {"gpt": RECORDS, "claude": 2 * RECORDS}
    teachers = result.stats["teachers"]
    assert (teachers["gpt"]["teacher_calls"], teachers["claude"]["teacher_calls"]) == (12, 24)

    again, _ = generate(config, tmp_path, RECORDS, state_dir=tmp_path / "batches")
    assert again.stats["teacher"]["cache_hits"] == 3 * RECORDS
    assert len(fault_server.batches) == 2
