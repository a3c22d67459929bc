"""Run a distillpipe command as a real subprocess with the backend spy, and SIGKILL it mid-way.

The spy is the one tests/test_resume.py installs (a ``sitecustomize`` that logs
every ``llama_cpp.Llama.create_completion`` call before and after it runs).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from support import without_answer_times
from test_resume import SPY, backend_log, cached_completions


def start(tmp_path: Path, args: list[str], cache_dir: Path, log: Path, name: str):
    spy_dir = tmp_path / "spy"
    spy_dir.mkdir(exist_ok=True)
    (spy_dir / "sitecustomize.py").write_text(SPY)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(spy_dir), os.environ.get("PYTHONPATH", "")]),
        "DISTILLPIPE_CACHE_DIR": str(cache_dir),
        "BACKEND_LOG": str(log),
    }
    command = [sys.executable, "-m", "distillpipe", *args, "-q"]
    with (tmp_path / f"{name}.stderr").open("ab") as stderr:
        return subprocess.Popen(command, env=env, stderr=stderr)


def kill_after(process: subprocess.Popen, cache_dir: Path, calls: int, stderr: Path) -> int:
    """SIGKILL ``process`` once ``calls`` completions are in the cache; returns how many are."""
    deadline = time.monotonic() + 400
    while cached_completions(cache_dir) < calls:
        assert process.poll() is None, stderr.read_text()
        assert time.monotonic() < deadline, "the first run made no progress"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    return cached_completions(cache_dir)


def resume_and_compare(tmp_path: Path, args_for, total_calls_at_least: int) -> None:
    """Kill a run, resume it, run it clean; the resumed run asks only what was missing
    and writes the same bytes as the clean one (records and rejected records)."""
    cache, first_log, second_log = tmp_path / "cache", tmp_path / "1.log", tmp_path / "2.log"
    first = start(tmp_path, args_for("out"), cache, first_log, "first")
    done = kill_after(first, cache, 1, tmp_path / "first.stderr")
    assert not (tmp_path / "out.jsonl").exists(), "a killed run must leave no output"
    answered_before_kill = set(backend_log(first_log, "answered"))

    second = start(tmp_path, args_for("out"), cache, second_log, "second")
    assert second.wait(timeout=600) == 0, (tmp_path / "second.stderr").read_text()
    clean_log = tmp_path / "clean.log"
    clean = start(tmp_path, args_for("clean"), tmp_path / "clean-cache", clean_log, "clean")
    assert clean.wait(timeout=600) == 0, (tmp_path / "clean.stderr").read_text()

    total = len(backend_log(clean_log, "asked"))
    asked_again = backend_log(second_log, "asked")
    assert total >= total_calls_at_least and done < total
    assert len(asked_again) == total - done
    assert len(set(asked_again)) == len(asked_again)
    assert len(set(asked_again) & answered_before_kill) <= 1
    for suffix in (".jsonl", ".rejected.jsonl"):
        resumed, fresh = tmp_path / f"out{suffix}", tmp_path / f"clean{suffix}"
        assert without_answer_times(resumed) == without_answer_times(fresh), suffix
