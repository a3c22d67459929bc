"""Provider batch APIs (``teacher.mode: batch``) against the fault server's batch endpoints.

The SDKs upload the request file, create the batch and read the results; the
journal in the run's state folder lets a killed run poll instead of resubmit.
"""

from __future__ import annotations

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
from distillpipe.teachers.batch import JOURNAL

RECORDS = 12


def echoes(records: list[dict]) -> list[str]:
    return [record["responses"][0]["text"] for record in records]


@pytest.mark.parametrize("backend", ["openai", "anthropic"])
def test_a_batch_run_maps_results_back_to_records_and_the_cache(
    fault_server: FaultServer, tmp_path: Path, backend: str
):
    config = api_config(fault_server, backend, mode="batch")
    config.generate.batch_size = 100
    result, records = generate(config, tmp_path, RECORDS, state_dir=tmp_path / "batches")
    assert echoes(records) == [f"echo: Say the number {i} in words." for i in range(RECORDS)]
    assert len(fault_server.batches) == 1
    assert result.stats["teacher"]["teacher_calls"] == RECORDS
    journal = (tmp_path / "batches" / JOURNAL).read_bytes().splitlines()
    assert len(journal) == 1 and len(orjson.loads(journal[0])["custom_ids"]) == RECORDS

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
    assert echoes(records) == [f"echo: Say the number {i} in words." for i in range(RECORDS)]
    _, second = fault_server.batches.values()
    assert 0 < len(second["items"]) < RECORDS
    assert max(fault_server.batch_items_seen.values()) == 2


def test_a_rejected_key_stops_a_batch_run_at_once(fault_server: FaultServer, tmp_path: Path):
    fault_server.set_fault("401")
    config = api_config(fault_server, "openai", mode="batch")
    with pytest.raises(FatalTeacherError, match=r"HTTP 401.*check the API key"):
        generate(config, tmp_path, 3, state_dir=tmp_path / "batches")


@pytest.mark.parametrize("backend", ["openai", "anthropic"])
def test_a_killed_batch_run_resumes_by_polling_never_resubmitting(
    fault_server: FaultServer, tmp_path: Path, backend: str, cli_env: dict[str, str]
):
    fault_server.set_fault(None, batch_delay=-1)  # batches stay in progress until released
    teacher = {
        "backend": backend,
        "model": "gpt-4o-mini" if backend == "openai" else "claude-3-5-haiku-20241022",
        "base_url": f"{fault_server.url}/v1" if backend == "openai" else fault_server.url,
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
    env = {**cli_env, "TEST_API_KEY": "sk-batch-secret"}
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
    rerun = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr.decode()
    assert len(fault_server.batches) == 1, "the rerun resubmitted a batch"
    lines = (tmp_path / "run" / "generate.jsonl").read_bytes().splitlines()
    records = [orjson.loads(line) for line in lines]
    assert echoes(records) == [f"echo: Say the number {i} in words." for i in range(RECORDS)]
    for path in (tmp_path / "run").rglob("*"):
        if path.is_file():
            assert b"sk-batch-secret" not in path.read_bytes(), path


@pytest.mark.parametrize("backend", ["openai", "anthropic"])
def test_batch_mode_puts_thousands_of_records_in_a_provider_batch_by_default(
    fault_server: FaultServer, backend: str
):
    assert api_config(fault_server, backend, mode="batch").generate.batch_size == (
        PROVIDER_BATCH_RECORDS
    )
    assert api_config(fault_server, backend).generate.batch_size == 64  # chat: small windows
