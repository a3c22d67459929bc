"""Sandboxed executions per second for trivial passing Python tests, beside a naive peer.

Targets (issue 16): sandbox per-run cost at most 2x the naive peer's, and >= 50
executions/s, on two cores. The sandbox is the execution filter's own path
(``sandbox.pool.ExecutionPool`` with the runner ``auto`` picks: bubblewrap
here, else rlimits) with the result cache off, so every test really runs.
The naive peer, measured in the same run on the same number of workers, is a
fresh ``python -c`` subprocess per test with no isolation. A third line, the
bare ``python -I -S`` the sandbox itself runs, shows what the isolation adds.
The measurements alternate round by round, so machine load hits them alike;
the load average is printed before and after.

    python bench/sandbox.py [--tests 200] [--workers 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from distillpipe.sandbox.base import Limits, Program
from distillpipe.sandbox.languages import BUILTIN
from distillpipe.sandbox.pool import ExecutionPool, choose_runner

TARGET_RATE = 50.0
TARGET_COST_RATIO = 2.0


def programs(count: int, salt: int) -> list[str]:
    """Distinct trivial passing tests (distinct, so nothing is deduplicated)."""
    return [
        f"def add(a, b):\n    return a + b\n\nassert add({i}, {salt}) == {i + salt}\n"
        for i in range(count)
    ]


def timed(run: Callable[[list[str]], None], sources: list[str]) -> float:
    started = time.perf_counter()
    run(sources)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tests", type=int, default=200, help="tests per round and side")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    runner, isolation = choose_runner("auto")
    pool = ExecutionPool(runner, cache=None, workers=args.workers)
    threads = ThreadPoolExecutor(args.workers)
    limits = Limits()
    language = BUILTIN["python"]

    def sandboxed(sources: list[str]) -> None:
        jobs = [
            (Program(language.argv("{dir}", limits.memory_mb), (("main.py", s),)), limits)
            for s in sources
        ]
        outcomes = pool.run_many(jobs)
        failed = [o for o in outcomes if o.exit_code != 0]
        assert not failed, f"{len(failed)} sandboxed tests failed: {failed[0]}"

    def subprocesses(command: list[str]) -> Callable[[list[str]], None]:
        def run(sources: list[str]) -> None:
            results = threads.map(
                lambda s: subprocess.run([*command, s], capture_output=True), sources
            )
            assert all(r.returncode == 0 for r in results)

        return run

    sides = {
        "naive": subprocesses([sys.executable, "-c"]),
        "sandbox": sandboxed,
        "bare -I -S": subprocesses([sys.executable, "-I", "-S", "-c"]),
    }
    print(f"isolation: {isolation.level}; workers: {args.workers}; cores: {os.cpu_count()}")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    sandboxed(programs(4, salt=-1))  # warm up: the runner's probe, page cache
    totals = dict.fromkeys(sides, 0.0)
    for round_ in range(args.rounds):
        for name, run in sides.items():
            totals[name] += timed(run, programs(args.tests, salt=round_))
    load_after = " ".join(f"{x:.2f}" for x in os.getloadavg())
    pool.close()
    threads.shutdown()

    runs = args.tests * args.rounds
    per_run_ms = {name: total * args.workers / runs * 1000 for name, total in totals.items()}
    rate = runs / totals["sandbox"]
    for name in sides:
        print(f"{name:>11}: {runs / totals[name]:7.1f} runs/s, {per_run_ms[name]:6.1f} ms per run")
    overhead = per_run_ms["sandbox"] - per_run_ms["bare -I -S"]
    print(f"isolation overhead per run (sandbox - bare -I -S): {overhead:.1f} ms")
    print(f"load average after: {load_after}")
    ratio = per_run_ms["sandbox"] / per_run_ms["naive"]
    print(
        f"sandbox / naive per-run cost ratio: {ratio:.2f} "
        f"(target <= {TARGET_COST_RATIO:g}: {'met' if ratio <= TARGET_COST_RATIO else 'missed'})"
    )
    print(
        f"executions/s / {TARGET_RATE:g} ratio: {rate / TARGET_RATE:.2f} "
        f"(target >= 1: {'met' if rate >= TARGET_RATE else 'missed'})"
    )


if __name__ == "__main__":
    main()
