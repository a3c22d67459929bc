"""The strong isolation level on Linux: bubblewrap (``bwrap``), then rlimits.

Each run sees the whole filesystem read-only. Its directory is ``/tmp``: a
fresh tmpfs of ``limits.disk_mb`` holding its files (read-only), the one
place it may write, gone when the run ends — nothing it writes reaches the
host's disk. The home directories (``/root``, ``/home``, ``$HOME``) are
empty read-only tmpfs, so keys and caches cannot be read; the interpreter's
own folders are bound back read-only where they live under one. ``/dev`` is
minimal and read-only, ``/proc`` its own. It has no network (only its own
loopback), its own pid namespace (when the run ends or is killed, the kernel
kills every process left in it), its own IPC and hostname, a new session,
and it dies with its parent.

A root parent runs bwrap itself as root (no user namespace) and drops the
program to an unprivileged uid per pool slot with util-linux ``setpriv``
(no capabilities, no new privileges): that uid cannot read root's files,
and RLIMIT_NPROC — which root ignores — caps its processes, so a fork bomb
stops at ``limits.processes``. A non-root parent gets a user namespace, where
the process cap counts the sandbox's processes alone. util-linux ``prlimit``
sets the rlimits inside, just before the program starts.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import ClassVar

from distillpipe.sandbox.base import Isolation, Limits, Program, Runner, which
from distillpipe.sandbox.process import Supervised, children_of, exited, kill_group
from distillpipe.sandbox.rlimits import MIB, prlimit_prefix, rlimit_values

INNER_DIR = "/tmp"
STOP_GRACE_S = 5.0  # for the kernel to kill a namespace full of processes
_probes: dict[tuple[object, ...], str | None] = {}
_probe_lock = threading.Lock()


def interpreter_dirs() -> list[str]:
    """The folders this Python needs, so ``{python}`` runs inside the sandbox."""
    executable = os.path.realpath(sys.executable)
    places = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    return sorted({os.path.realpath(p) for p in places} | {os.path.dirname(executable)})


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


class BubblewrapRunner(Runner):
    level: ClassVar[str] = "bubblewrap"

    def __init__(self, temp_root: str | None = None, expose: Sequence[str] = ()) -> None:
        super().__init__(temp_root)
        self.bwrap, self.prlimit = which("bwrap"), which("prlimit")
        self.setpriv = which("setpriv") if self.as_root else None
        paths = sorted({os.path.realpath(p) for p in (*interpreter_dirs(), *expose)})
        # a folder inside another exposed one comes with it
        self.expose = [p for p in paths if not any(_under(p, q) and p != q for q in paths)]

    def problem(self) -> str | None:
        """Why this level cannot run here, or None when a probe run succeeded."""
        needed = {"bwrap": self.bwrap, "prlimit": self.prlimit}
        if self.as_root:
            needed["setpriv"] = self.setpriv
        absent = [name for name, path in needed.items() if path is None]
        if absent:
            return f"{', '.join(absent)} not found on PATH"
        key = (self.as_root, tuple(self.expose), self.temp_root)
        with _probe_lock:
            if key not in _probes:
                outcome = self.run(Program(("true",), ()), Limits(wall_s=30, cpu_s=5))
                ok = outcome.status == "exited" and outcome.exit_code == 0
                tail = (outcome.stderr.strip().splitlines() or [outcome.status])[-1]
                _probes[key] = None if ok else f"a probe run failed: {tail}"
            return _probes[key]

    def isolation(self) -> Isolation:
        enforced = [
            "fresh directory per run (a tmpfs of limits.disk_mb, the only writable path)",
            "read-only filesystem, home directories hidden",
            "no network (own network namespace)",
            "own pid namespace: every process is killed when the run ends",
            "wall-clock timeout",
            "CPU time (RLIMIT_CPU)",
            "address space (RLIMIT_AS)",
            "file size (RLIMIT_FSIZE)",
            "output cap",
            "clean environment",
            "process count (RLIMIT_NPROC)",
        ]
        if self.as_root:
            enforced.append("runs as an unprivileged uid per slot, no capabilities")
        else:
            enforced.append("own user namespace, no capabilities")
        return Isolation(self.level, tuple(enforced))

    def hidden_roots(self) -> list[str]:
        home = os.path.realpath(os.path.expanduser("~"))
        roots = ["/root", "/home", home]
        return [r for r in dict.fromkeys(roots) if r != "/" and os.path.isdir(r)]

    def launch(
        self, program: Program, workdir: Path, limits: Limits, slot: int
    ) -> tuple[list[str], str]:
        assert self.bwrap and self.prlimit
        hidden = self.hidden_roots()
        argv = [
            self.bwrap,
            "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", "--die-with-parent", "--new-session",
        ]  # fmt: skip
        if not self.as_root:
            argv.append("--unshare-user")
        argv += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
        for root in hidden:
            argv += ["--tmpfs", root]
        # its directory: a tmpfs of limits.disk_mb holding the program's files, read-only
        argv += ["--perms", "01777", "--size", str(limits.disk_mb * MIB), "--tmpfs", INNER_DIR]
        for name, _ in program.files:
            argv += ["--ro-bind", str(workdir / name), f"{INNER_DIR}/{name}"]
        argv += self._bind_back([*hidden, INNER_DIR])
        for root in (*hidden, "/dev"):
            argv += ["--remount-ro", root]
        argv += ["--chdir", INNER_DIR, "--"]
        uid = self.slot_uid(slot)
        if uid is not None:
            assert self.setpriv
            argv += [
                self.setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--",
            ]  # fmt: skip
        argv += prlimit_prefix(self.prlimit, rlimit_values(limits, program, limits.processes))
        return argv + list(program.argv), INNER_DIR

    def _bind_back(self, covered: Iterable[str]) -> list[str]:
        """Bind the exposed folders (the interpreter's) read-only over what hides them."""
        args: list[str] = []
        made: set[str] = set()
        covered = list(covered)
        for path in self.expose:
            root = next((r for r in covered if _under(path, r)), None)
            if root is None or not os.path.isdir(path):
                continue
            ancestors = []
            parent = os.path.dirname(path)
            while parent != root and _under(parent, root):
                ancestors.append(parent)
                parent = os.path.dirname(parent)
            for ancestor in reversed(ancestors):  # bwrap would make them 0700
                if ancestor not in made:
                    args += ["--perms", "0755", "--dir", ancestor]
                    made.add(ancestor)
            args += ["--ro-bind", path, path]
        return args

    def stop(self, pid: int) -> None:
        """SIGKILL the pid namespace's init: the kernel kills every process in the
        namespace and bwrap exits only once they are gone, so none outlives the run."""
        for child in children_of(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(child, signal.SIGKILL)
        deadline = time.monotonic() + STOP_GRACE_S
        while not exited(pid) and time.monotonic() < deadline:
            time.sleep(0.002)
        kill_group(pid)

    def exit_signal(self, result: Supervised) -> int | None:
        if result.returncode < 0:  # bwrap itself was killed
            return -result.returncode
        # bwrap exits 128 + n when the program died of signal n
        return result.returncode - 128 if result.returncode > 128 else None
