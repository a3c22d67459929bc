"""The fallback isolation level: resource limits and a process group, nothing more.

Used where bubblewrap is absent or does not work (macOS, containers without
user namespaces). Each run gets its own directory, process group, wall clock,
output cap and rlimits: CPU time, address space, file size, open files, and a
process count. RLIMIT_NPROC counts per user and root ignores it, so a root
parent runs each pool slot as its own unprivileged uid (``SLOT_UID_BASE``):
the cap then counts that program's processes alone, and the uid's stragglers
are killed after the run — provided that uid can reach this interpreter
(not so for one under root's 0700 home: then the programs run as root with
no process cap). What it cannot do — no network isolation, the program may
write wherever its user may (``/tmp``), a non-root parent's process cap is
approximate — is listed in ``isolation().missing`` and so in the run's stats.

The limits are applied by util-linux ``prlimit`` where it is installed (no
Python runs between fork and exec), else by a ``preexec_fn``.
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from distillpipe.sandbox.base import Isolation, Limits, Program, Runner, which
from distillpipe.sandbox.process import Supervised, processes

MIB = 1 << 20


def rlimit_values(limits: Limits, program: Program, nproc: int | None) -> dict[int, int]:
    """RLIMIT_* → value for one run (soft = hard, except CPU: SIGXCPU a second before SIGKILL)."""
    values = {
        resource.RLIMIT_AS: (program.address_space_mb or limits.memory_mb) * MIB,
        resource.RLIMIT_CPU: math.ceil(limits.cpu_s),
        resource.RLIMIT_FSIZE: limits.file_mb * MIB,
        resource.RLIMIT_NOFILE: limits.open_files,
        resource.RLIMIT_CORE: 0,
    }
    if nproc is not None:
        values[resource.RLIMIT_NPROC] = nproc
    return values


_PRLIMIT_FLAGS = {
    resource.RLIMIT_AS: "--as",
    resource.RLIMIT_CPU: "--cpu",
    resource.RLIMIT_FSIZE: "--fsize",
    resource.RLIMIT_NOFILE: "--nofile",
    resource.RLIMIT_CORE: "--core",
    resource.RLIMIT_NPROC: "--nproc",
}


def prlimit_prefix(prlimit: str, values: dict[int, int]) -> list[str]:
    """``prlimit --as=… --cpu=soft:hard … --``: the limits set just before exec."""
    args = [prlimit]
    for which_limit, value in values.items():
        hard = value + 1 if which_limit == resource.RLIMIT_CPU else value
        args.append(f"{_PRLIMIT_FLAGS[which_limit]}={value}:{hard}")
    return [*args, "--"]


def preexec_limits(values: dict[int, int]) -> Callable[[], None]:
    def apply() -> None:
        for which_limit, value in values.items():
            hard = value + 1 if which_limit == resource.RLIMIT_CPU else value
            resource.setrlimit(which_limit, (value, hard))

    return apply


def reachable_by_others(path: str) -> bool:
    """True when a user who is neither owner nor in the group may execute ``path``."""
    current = path
    while True:
        try:
            mode = os.stat(current).st_mode
        except OSError:
            return False
        if not mode & 0o001:
            return False
        parent = os.path.dirname(current)
        if parent == current:
            return True
        current = parent


def processes_of(uid: int) -> list[int]:
    """The live (not zombie) pids whose owner is ``uid``."""
    return [
        pid for pid, owner, fields in processes() if owner == uid and fields[0] not in ("Z", "X")
    ]


class RlimitRunner(Runner):
    level: ClassVar[str] = "rlimits"

    def __init__(self, temp_root: str | None = None, drop_uid: bool | None = None) -> None:
        super().__init__(temp_root)
        self.prlimit = which("prlimit")
        if drop_uid is None:
            drop_uid = self.as_root and reachable_by_others(os.path.realpath(sys.executable))
        self.drop_uid = drop_uid and self.as_root

    def slot_uid(self, slot: int) -> int | None:
        return super().slot_uid(slot) if self.drop_uid else None

    def isolation(self) -> Isolation:
        enforced = [
            "fresh directory per run",
            "own process group, killed on timeout",
            "wall-clock timeout",
            "CPU time (RLIMIT_CPU)",
            "address space (RLIMIT_AS)",
            "file size (RLIMIT_FSIZE)",
            "output cap",
            "clean environment",
        ]
        missing = [
            "network: not isolated",
            "filesystem: the program may write wherever its user may (e.g. /tmp)",
            "disk: its directory's size is not capped, only each file's (RLIMIT_FSIZE)",
        ]
        if self.drop_uid:
            enforced += [
                "runs as an unprivileged uid per slot; its processes are swept after each run",
                "process count (RLIMIT_NPROC)",
            ]
        elif self.as_root:
            missing += [
                "pid namespace: a process that leaves its group outlives the run",
                "runs as root: this interpreter is out of an unprivileged uid's reach",
                "process count: not capped (root ignores RLIMIT_NPROC); the wall clock bounds it",
            ]
        else:
            enforced.append("process count: the user's processes + limits.processes")
            missing += [
                "pid namespace: a process that leaves its group outlives the run",
                "process count: shared with the user's other processes",
            ]
        return Isolation(self.level, tuple(enforced), tuple(missing))

    def _nproc(self, limits: Limits) -> int:
        if self.as_root:
            return limits.processes  # effective once the uid is dropped
        return len(processes_of(os.getuid())) + limits.processes

    def launch(
        self, program: Program, workdir: Path, limits: Limits, slot: int
    ) -> tuple[list[str], str]:
        argv = list(program.argv)
        if self.prlimit:
            values = rlimit_values(limits, program, self._nproc(limits))
            argv = prlimit_prefix(self.prlimit, values) + argv
        return argv, str(workdir)

    def spawn_options(self, program: Program, limits: Limits, slot: int) -> dict[str, Any]:
        options: dict[str, Any] = {"user": self.slot_uid(slot)}
        if not self.prlimit:
            # no util-linux: the same limits, set in the child between fork and exec
            values = rlimit_values(limits, program, self._nproc(limits))
            options["preexec_fn"] = preexec_limits(values)
        return options

    def after(self, result: Supervised, slot: int) -> None:
        uid = self.slot_uid(slot)
        if uid is None:
            return
        for _ in range(500):  # a fork bomb may still be forking while it is swept
            pids = processes_of(uid)
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.002)
