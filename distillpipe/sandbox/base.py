"""What a sandboxed run is: a program, its limits, its outcome, and the runner protocol.

A ``Program`` is files to write into a fresh directory, the command to run
there and what to feed its stdin. A ``Runner`` runs one program under
``Limits`` and answers an ``Outcome``; each isolation level is one runner
(``bubblewrap.py``, ``rlimits.py``) and says in ``isolation()`` what it
enforces and what it does not, so a run's stats can name weaker isolation.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from distillpipe.sandbox.process import Supervised, kill_group, supervise

Status = Literal["exited", "timeout", "cpu_limit", "output_limit", "signal", "sandbox_error"]

# the uids a root parent runs programs as: one per pool slot, so RLIMIT_NPROC
# (which root itself ignores) counts one program's processes only
SLOT_UID_BASE = 200_000


class Limits(BaseModel):
    """What one run may use. Every field is part of the result cache key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    wall_s: float = Field(10.0, gt=0, description="wall-clock seconds before the run is killed")
    cpu_s: float = Field(5.0, gt=0, description="CPU seconds (RLIMIT_CPU)")
    memory_mb: int = Field(512, ge=16, description="address space (RLIMIT_AS), in MiB")
    output_bytes: int = Field(1 << 20, ge=1024, description="stdout or stderr beyond this: killed")
    file_mb: int = Field(16, ge=1, description="largest file the program may write (RLIMIT_FSIZE)")
    disk_mb: int = Field(64, ge=1, description="bubblewrap: the size of its directory (a tmpfs)")
    processes: int = Field(64, ge=1, description="processes and threads (RLIMIT_NPROC)")
    open_files: int = Field(256, ge=16, description="open file descriptors (RLIMIT_NOFILE)")


@dataclass(frozen=True, slots=True)
class Program:
    """Files written into the run's directory, then ``argv`` run there."""

    argv: tuple[str, ...]  # may use {dir}: the run's directory as the program sees it
    files: tuple[tuple[str, str], ...]  # (name, content)
    stdin: str = ""
    address_space_mb: int | None = None  # a language that reserves more (node) than it uses

    def key_material(self) -> dict[str, Any]:
        return {
            "argv": list(self.argv),
            "files": [list(item) for item in self.files],
            "stdin": self.stdin,
            "address_space_mb": self.address_space_mb,
        }


@dataclass(slots=True)
class Outcome:
    status: Status
    exit_code: int | None = None
    signal: int | None = None
    stdout: str = ""
    stderr: str = ""
    wall_s: float = 0.0
    cpu_s: float = 0.0
    cached: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "exit_code": self.exit_code,
            "signal": self.signal,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "wall_s": round(self.wall_s, 4),
            "cpu_s": round(self.cpu_s, 4),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], cached: bool = False) -> Outcome:
        return cls(**data, cached=cached)


@dataclass(frozen=True, slots=True)
class Isolation:
    """What a runner enforces; ``missing`` lists what it does not, in words."""

    level: str
    enforced: tuple[str, ...]
    missing: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "weaker": bool(self.missing),
            "enforced": list(self.enforced),
            "missing": list(self.missing),
        }


class Runner(ABC):
    """One isolation level. ``run`` is thread-safe: a pool calls it from many threads."""

    level: ClassVar[str]

    def __init__(self, temp_root: str | None = None) -> None:
        self.temp_root = temp_root
        self.as_root = os.geteuid() == 0

    @abstractmethod
    def isolation(self) -> Isolation:
        """What this runner enforces on this machine."""

    @abstractmethod
    def launch(
        self, program: Program, workdir: Path, limits: Limits, slot: int
    ) -> tuple[list[str], str]:
        """The full command line that runs ``program`` in ``workdir``, and the path
        the program sees its directory at."""

    def env(self, inner_dir: str) -> dict[str, str]:
        """A clean environment: nothing of the parent's (API keys) reaches the program."""
        return {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": inner_dir,
            "TMPDIR": inner_dir,
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONHASHSEED": "0",
        }

    def slot_uid(self, slot: int) -> int | None:
        """The unprivileged uid a root parent runs slot ``slot`` as; None when not root."""
        return SLOT_UID_BASE + (os.getpid() % 4096) * 32 + slot if self.as_root else None

    def run(self, program: Program, limits: Limits, slot: int = 0) -> Outcome:
        workdir = Path(tempfile.mkdtemp(prefix="distillpipe-sandbox-", dir=self.temp_root))
        try:
            for name, content in program.files:
                (workdir / name).write_text(content)
            (workdir / ".stdin").write_text(program.stdin)
            uid = self.slot_uid(slot)
            if uid is not None:
                for path in (workdir, *workdir.iterdir()):
                    os.chown(path, uid, uid)
            argv, inner_dir = self.launch(program, workdir, limits, slot)
            argv = [part.replace("{dir}", inner_dir) for part in argv]
            result = supervise(
                argv,
                cwd=workdir,
                stdin_path=workdir / ".stdin",
                env=self.env(inner_dir),
                wall_s=limits.wall_s,
                output_bytes=limits.output_bytes,
                stop=self.stop,
                **self.spawn_options(program, limits, slot),
            )
            self.after(result, slot)
            return self.outcome(result, limits)
        except OSError as exc:
            return Outcome("sandbox_error", stderr=f"{type(exc).__name__}: {exc}")
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def spawn_options(self, program: Program, limits: Limits, slot: int) -> dict[str, Any]:
        """Extra arguments for ``supervise`` (a preexec hook, a user to run as)."""
        return {}

    def stop(self, pid: int) -> None:
        """End a run that overstayed (``pid`` leads its process group)."""
        kill_group(pid)

    def after(self, result: Supervised, slot: int) -> None:  # noqa: B027 - optional hook
        """Clean-up once the program's process group is gone (stragglers of the slot's uid)."""

    def exit_signal(self, result: Supervised) -> int | None:
        """The signal that ended the program, or None when it exited."""
        return -result.returncode if result.returncode < 0 else None

    def outcome(self, result: Supervised, limits: Limits) -> Outcome:
        signal = self.exit_signal(result)
        common = {
            "stdout": result.stdout,
            "stderr": result.stderr,
            "wall_s": result.wall_s,
            "cpu_s": result.cpu_s,
            "exit_code": None if signal is not None else result.returncode,
            "signal": signal,
        }
        if result.timed_out:
            return Outcome("timeout", **common)
        if result.overflowed:
            return Outcome("output_limit", **common)
        if signal is not None:
            over_cpu = signal == 24 or (signal == 9 and result.cpu_s >= limits.cpu_s)  # SIGXCPU
            return Outcome("cpu_limit" if over_cpu else "signal", **common)
        return Outcome("exited", **common)


def which(name: str) -> str | None:
    return shutil.which(name, path="/usr/local/bin:/usr/bin:/bin:" + os.environ.get("PATH", ""))
