"""The pool runs programs in parallel and caches what they did in SQLite: a rerun
executes nothing, a changed limit runs again; the runner choice falls back, and says so."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from distillpipe.errors import SandboxError
from distillpipe.sandbox import bubblewrap
from distillpipe.sandbox.base import Limits, Program
from distillpipe.sandbox.cache import ExecutionCache, execution_key
from distillpipe.sandbox.languages import BUILTIN
from distillpipe.sandbox.pool import ExecutionPool, choose_runner

LIMITS = Limits(wall_s=10, cpu_s=5)


def python(code: str) -> Program:
    return Program(BUILTIN["python"].argv("{dir}", 256), (("main.py", code),))


def test_runs_go_in_parallel_and_come_back_in_order(tmp_path: Path) -> None:
    runner, _ = choose_runner("auto")
    pool = ExecutionPool(runner, workers=4)
    try:
        jobs = [(python(f"import time\ntime.sleep(1)\nprint({i})\n"), LIMITS) for i in range(4)]
        started = time.monotonic()
        outcomes = pool.run_many(jobs)
        elapsed = time.monotonic() - started
    finally:
        pool.close()
    assert [o.stdout for o in outcomes] == ["0\n", "1\n", "2\n", "3\n"]
    assert elapsed < 3.5  # one after another would take at least 4 s


def test_a_rerun_is_answered_from_the_cache_and_new_limits_run_again(tmp_path: Path) -> None:
    path = tmp_path / "executions.sqlite"
    runner, isolation = choose_runner("auto")
    program = python("print(sum(range(10)))\n")
    first = ExecutionPool(runner, ExecutionCache(path), workers=2)
    try:
        [ran] = first.run_many([(program, LIMITS)])
    finally:
        first.close()
    assert (ran.stdout, ran.cached) == ("45\n", False)

    again = ExecutionPool(runner, ExecutionCache(path), workers=2)
    try:
        [cached, stricter] = again.run_many([(program, LIMITS), (program, Limits(wall_s=9))])
    finally:
        again.close()
    assert (cached.stdout, cached.cached) == ("45\n", True)
    assert (stricter.stdout, stricter.cached) == ("45\n", False)
    with sqlite3.connect(path) as db:
        keys = {row[0] for row in db.execute("SELECT key FROM executions")}
    assert keys == {
        execution_key(program, LIMITS, isolation.level),
        execution_key(program, Limits(wall_s=9), isolation.level),
    }


def test_the_key_covers_code_stdin_command_limits_and_isolation() -> None:
    base = python("print(input())\n")
    variants = [
        python("print(input() )\n"),
        Program(base.argv, base.files, stdin="x"),
        Program((*base.argv, "--flag"), base.files),
    ]
    key = execution_key(base, LIMITS, "bubblewrap")
    assert key.startswith("sha256:")
    assert all(execution_key(v, LIMITS, "bubblewrap") != key for v in variants)
    assert execution_key(base, Limits(memory_mb=1024), "bubblewrap") != key
    assert execution_key(base, LIMITS, "rlimits") != key


def test_auto_falls_back_to_rlimits_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    real_which = bubblewrap.which
    monkeypatch.setattr(
        bubblewrap, "which", lambda name: None if name == "bwrap" else real_which(name)
    )
    _, isolation = choose_runner("auto")
    assert isolation.level == "rlimits"
    assert isolation.missing[0] == "bubblewrap: bwrap not found on PATH"
    with pytest.raises(SandboxError, match="isolation: bubblewrap cannot run here"):
        choose_runner("bubblewrap")
