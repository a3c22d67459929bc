"""Resume for real: SIGKILL a `distillpipe generate` mid-run, rerun it, count backend calls.

The subprocess runs the real llama.cpp model. A ``sitecustomize`` spy on the
test's PYTHONPATH wraps ``llama_cpp.Llama.create_completion`` to log every
request that reaches the backend (before) and every answer (after), so the
test counts what the backend was asked without changing distillpipe.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import orjson
from support import small_llamacpp_config, without_answer_times, write_config

from distillpipe.io import read_records, write_jsonl

PROMPTS = 40

SPY = """
import os, orjson, llama_cpp
_original = llama_cpp.Llama.create_completion
def _spy(self, prompt, *args, **kwargs):
    path = os.environ["BACKEND_LOG"]
    key = [prompt, kwargs.get("seed")]
    with open(path, "ab") as log:
        log.write(orjson.dumps({"event": "asked", "key": key}) + b"\\n")
    out = _original(self, prompt, *args, **kwargs)
    with open(path, "ab") as log:
        log.write(orjson.dumps({"event": "answered", "key": key}) + b"\\n")
    return out
llama_cpp.Llama.create_completion = _spy
"""


def backend_log(path: Path, event: str) -> list[tuple[str, int]]:
    if not path.exists():
        return []
    rows = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    return [tuple(row["key"]) for row in rows if row["event"] == event]


def cached_completions(cache_dir: Path) -> int:
    if not (cache_dir / "cache.sqlite").exists():
        return 0
    db = sqlite3.connect(cache_dir / "cache.sqlite", timeout=30)
    try:
        return db.execute("SELECT COUNT(*) FROM completions").fetchone()[0]
    except sqlite3.OperationalError:  # the first run has not made the table yet
        return 0
    finally:
        db.close()


def generate(tmp_path: Path, cache_dir: Path, log: Path, output: str) -> subprocess.Popen:
    spy_dir = tmp_path / "spy"
    spy_dir.mkdir(exist_ok=True)
    (spy_dir / "sitecustomize.py").write_text(SPY)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(spy_dir), os.environ.get("PYTHONPATH", "")]),
        "DISTILLPIPE_CACHE_DIR": str(cache_dir),
        "BACKEND_LOG": str(log),
    }
    command = [sys.executable, "-m", "distillpipe", "generate", "-q",
               "-c", str(tmp_path / "config.yaml"), "-i", str(tmp_path / "in.jsonl"),
               "-o", str(tmp_path / output)]  # fmt: skip
    with (tmp_path / f"{output}.stderr").open("ab") as stderr:
        return subprocess.Popen(command, env=env, stderr=stderr)


def stderr_of(tmp_path: Path, output: str) -> str:
    return (tmp_path / f"{output}.stderr").read_text()


def test_a_killed_generate_resumes_without_asking_a_finished_request_again(tmp_path: Path):
    config = small_llamacpp_config(max_tokens=6, temperature=0.8)
    config["generate"]["batch_size"] = 8
    write_config(tmp_path / "config.yaml", config)
    write_jsonl(
        tmp_path / "in.jsonl",
        [{"instruction": f"Write a short slogan for shop number {i}."} for i in range(PROMPTS)],
    )
    cache_dir, first_log, second_log = tmp_path / "cache", tmp_path / "1.log", tmp_path / "2.log"

    first = generate(tmp_path, cache_dir, first_log, "out.jsonl")
    deadline = time.monotonic() + 300
    # Kill once 12 completions are committed: the cache, not the backend, is what resume reads.
    while cached_completions(cache_dir) < 12:
        assert first.poll() is None, stderr_of(tmp_path, "out.jsonl")
        assert time.monotonic() < deadline, "the first run made no progress"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert first.returncode == -signal.SIGKILL
    assert not (tmp_path / "out.jsonl").exists(), "a killed run must leave no output"
    committed = cached_completions(cache_dir)
    answered_before_kill = set(backend_log(first_log, "answered"))
    assert 12 <= committed < PROMPTS

    second = generate(tmp_path, cache_dir, second_log, "out.jsonl")
    assert second.wait(timeout=600) == 0, stderr_of(tmp_path, "out.jsonl")
    asked_again = backend_log(second_log, "asked")
    assert len(asked_again) == PROMPTS - committed
    assert len(set(asked_again)) == len(asked_again)
    # Only a request answered in the instant between the backend and the cache commit may repeat.
    assert len(set(asked_again) & answered_before_kill) <= 1

    clean = generate(tmp_path, tmp_path / "clean-cache", tmp_path / "clean.log", "clean.jsonl")
    assert clean.wait(timeout=600) == 0, stderr_of(tmp_path, "clean.jsonl")
    assert len(backend_log(tmp_path / "clean.log", "asked")) == PROMPTS

    resumed = list(read_records(tmp_path / "out.jsonl"))
    assert len(resumed) == PROMPTS
    assert len({record["id"] for record in resumed}) == PROMPTS
    resumed_rows = without_answer_times(tmp_path / "out.jsonl")
    assert resumed_rows == without_answer_times(tmp_path / "clean.jsonl")
