"""Plain helpers the tests import: HTTP waits and configs written to disk."""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import yaml


def wait_for_http(url: str, timeout: float, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=1.0) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


def write_config(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def small_llamacpp_config(**generate: object) -> dict:
    """A config for the embedded gemma kept small enough for 2 shared cores."""
    return {
        "name": "test",
        "seed": 7,
        "teacher": {"backend": "llamacpp", "mode": "completion", "n_ctx": 512},
        "generate": {"n": 1, "max_tokens": 8, "temperature": 0.7, **generate},
    }


def processes_with(marker: str) -> list[int]:
    """Pids whose command line contains ``marker`` (a sandboxed program's tag)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def write_records(path: Path, count: int) -> Path:
    """``count`` records asking for a number in words, ids ``r0``, ``r1``, ..."""
    path.write_bytes(
        b"".join(
            orjson.dumps({"id": f"r{i}", "instruction": f"Say the number {i} in words."}) + b"\n"
            for i in range(count)
        )
    )
    return path


def paid_generate_config(tmp_path: Path, base_url: str, records: int, **teacher: object) -> Path:
    """A generate-only run of ``records`` records against an openai-compatible endpoint
    (the fault server) priced at 1000 USD per million tokens; ``config.yaml`` in ``tmp_path``."""
    path = tmp_path / "config.yaml"
    data = {
        "input": "in.jsonl",
        "run_dir": str(tmp_path / "runs"),
        "teacher": {
            "backend": "openai",
            "model": "gpt-4o-mini",
            "base_url": base_url,
            "retry_backoff": 0.02,
            **teacher,
        },
        "generate": {"n": 2, "max_tokens": 100},
        "cost": {"prices": {"gpt-4o-mini": {"input": 1000.0, "output": 1000.0}}},
    }
    path.write_text(yaml.safe_dump(data))
    write_records(tmp_path / "in.jsonl", records)
    return path


def without_answer_times(path: Path) -> list[dict]:
    """A JSONL file's rows less when the teacher answered (``provenance.time`` of every
    response and conversation turn). A rerun replays it from the cache; a run against
    another cache (a clean run beside a resumed one) asked at other times, and all else
    must be equal."""
    rows = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    for row in rows:
        for response in row.get("responses") or []:
            (response.get("provenance") or {}).pop("time", None)
        conversation = row.get("conversation") or {}
        for turn in [*conversation.get("assistant", []), *conversation.get("users", [])]:
            (turn.get("provenance") or {}).pop("time", None)
    return rows
