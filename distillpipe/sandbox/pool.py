"""A worker pool sized to the cores that runs programs through a runner and a cache.

Threads suffice: each one waits on its own sandboxed process. A thread takes
a slot number for the duration of a run, and the runner derives the run's
unprivileged uid from it, so no two concurrent runs share a uid (and so a
process cap). Identical programs in one call run once.
"""

from __future__ import annotations

import os
import queue
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

from distillpipe.errors import SandboxError
from distillpipe.sandbox.base import Isolation, Limits, Outcome, Program, Runner
from distillpipe.sandbox.bubblewrap import BubblewrapRunner
from distillpipe.sandbox.cache import ExecutionCache, execution_key
from distillpipe.sandbox.rlimits import RlimitRunner

IsolationChoice = Literal["auto", "bubblewrap", "rlimits"]
MAX_SLOTS = 128  # see Runner.slot_uid
Job = tuple[Program, Limits]


def choose_runner(
    choice: IsolationChoice, expose: Sequence[str] = (), temp_root: str | None = None
) -> tuple[Runner, Isolation]:
    """The runner for ``choice`` and what it isolates; ``auto`` falls back to rlimits,
    and says why, where bubblewrap cannot run."""
    if choice == "rlimits":
        runner: Runner = RlimitRunner(temp_root)
        return runner, runner.isolation()
    strong = BubblewrapRunner(temp_root, expose)
    problem = strong.problem()
    if problem is None:
        return strong, strong.isolation()
    if choice == "bubblewrap":
        raise SandboxError(
            f"isolation: bubblewrap cannot run here ({problem}); install bubblewrap and "
            "util-linux, or set isolation: rlimits (weaker)"
        )
    runner = RlimitRunner(temp_root)
    weaker = runner.isolation()
    missing = (f"bubblewrap: {problem}", *weaker.missing)
    return runner, Isolation(weaker.level, weaker.enforced, missing)


class ExecutionPool:
    def __init__(
        self, runner: Runner, cache: ExecutionCache | None = None, workers: int | None = None
    ) -> None:
        self.runner, self.cache = runner, cache
        self.workers = max(1, min(workers or os.cpu_count() or 1, MAX_SLOTS))
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="distillpipe-sandbox")
        self._slots: queue.SimpleQueue[int] = queue.SimpleQueue()
        for slot in range(self.workers):
            self._slots.put(slot)

    def run_many(self, jobs: Sequence[Job]) -> list[Outcome]:
        """One outcome per job, in order: from the cache, else run (in parallel)."""
        keys = [execution_key(program, limits, self.runner.level) for program, limits in jobs]
        found = self.cache.get_many(keys) if self.cache is not None else {}
        todo = {key: job for key, job in zip(keys, jobs, strict=True) if key not in found}
        fresh = dict(zip(todo, self._executor.map(self._run, todo.values()), strict=True))
        if self.cache is not None:
            self.cache.put_many(fresh)
        return [found[key] if key in found else fresh[key] for key in keys]

    def _run(self, job: Job) -> Outcome:
        slot = self._slots.get()
        try:
            return self.runner.run(*job, slot=slot)
        finally:
            self._slots.put(slot)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        if self.cache is not None:
            self.cache.close()
