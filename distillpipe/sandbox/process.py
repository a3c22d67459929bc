"""Run one command in its own process group, with a wall clock and an output cap.

Both pipes are read as they fill (a program that prints a lot never blocks on
a full pipe); past ``output_bytes`` on either, or past ``wall_s``, the whole
process group gets SIGKILL. ``os.wait4`` reports the CPU time the program
and the children it waited for used.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

# how often a run checks whether its program ended while a child holds its pipes
_POLL_S = 0.1


@dataclass(slots=True)
class Supervised:
    returncode: int
    stdout: str
    stderr: str
    wall_s: float
    cpu_s: float
    timed_out: bool = False
    overflowed: bool = False


def supervise(
    argv: list[str],
    *,
    cwd: Path,
    stdin_path: Path,
    env: dict[str, str],
    wall_s: float,
    output_bytes: int,
    preexec_fn: Callable[[], None] | None = None,
    user: int | None = None,
    stop: Callable[[int], None] | None = None,
) -> Supervised:
    """Run ``argv``; on timeout or overflow ``stop(pid)`` ends it (default: SIGKILL to
    its process group)."""
    stop = stop or kill_group
    started = time.monotonic()
    deadline = started + wall_s
    with stdin_path.open("rb") as stdin:
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            process_group=0,  # its own group: killpg reaches every child it forks
            preexec_fn=preexec_fn,
            user=user,
            group=user,
            extra_groups=[] if user is not None else None,
            close_fds=True,
        )
    assert process.stdout is not None and process.stderr is not None
    out_fd, err_fd = process.stdout.fileno(), process.stderr.fileno()
    buffers = {out_fd: bytearray(), err_fd: bytearray()}
    timed_out = overflowed = False
    with selectors.DefaultSelector() as selector:
        for pipe in (process.stdout, process.stderr):
            selector.register(pipe, selectors.EVENT_READ)
        while selector.get_map() and not overflowed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            events = selector.select(min(remaining, _POLL_S))
            if not events and exited(process.pid):
                kill_group(process.pid)  # a child it left behind holds the pipes open
            for key, _ in events:
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    selector.unregister(key.fileobj)
                    continue
                buffer = buffers[key.fd]
                buffer += chunk
                if len(buffer) > output_bytes:
                    del buffer[output_bytes:]
                    overflowed = True
    if timed_out or overflowed:
        stop(process.pid)
    while not exited(process.pid):  # pipes closed, the program may still run
        if time.monotonic() >= deadline:
            timed_out = True
            stop(process.pid)
        time.sleep(0.002)
    kill_group(process.pid)  # stragglers; the leader is a zombie, so its group id is not reused
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    process.stdout.close()
    process.stderr.close()
    out, err = buffers[out_fd], buffers[err_fd]
    return Supervised(
        returncode=process.returncode,
        stdout=out.decode("utf-8", "replace"),
        stderr=err.decode("utf-8", "replace"),
        wall_s=time.monotonic() - started,
        cpu_s=usage.ru_utime + usage.ru_stime,
        timed_out=timed_out,
        overflowed=overflowed,
    )


def exited(pid: int) -> bool:
    """True once ``pid`` has ended, without reaping it."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def processes() -> Iterator[tuple[int, int, list[str]]]:
    """``(pid, owner uid, the fields of /proc/PID/stat after the command)`` for every
    process still listed (state first, then the parent pid); none without /proc."""
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                uid = entry.stat().st_uid
                fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
                yield int(entry.name), uid, fields


def children_of(pid: int) -> list[int]:
    """The pids whose parent is ``pid``."""
    return [child for child, _, fields in processes() if int(fields[1]) == pid]


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
