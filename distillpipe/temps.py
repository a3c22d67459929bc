"""Temporary files and folders beside a target, and the removal of those a killed writer left.

A writer of ``dir/name`` stages its bytes in ``dir/.name.<8 characters>.tmp``
and renames that over the target when it is done. While it writes, it holds
an exclusive ``flock`` on the temporary; the kernel drops the lock when the
writer exits, however it exits (``kill -9`` included). So "the writer is gone"
is one non-blocking lock attempt, with none of a pid check's misjudgements
(a reused pid, a pid from another container or host sharing the folder), and
a run never removes a temporary that a concurrent run is still writing.

Created files get the mode ``open()`` would give them (0666 less the umask,
or the folder's default ACL): the kernel applies it at creation, so nothing
reads or toggles the process-wide umask. Folders likewise get 0777 less it.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no locks, so nothing is ever removed
    fcntl = None  # type: ignore[assignment]

_TOKEN = r"[a-z0-9_]{8}"  # ours are hex; 8 of mkstemp's characters match the files it left


def temp_name(target: Path) -> Path:
    return target.parent / f".{target.name}.{secrets.token_hex(4)}.tmp"


def is_temp_of(candidate: str, target_name: str) -> bool:
    """Whether a file name has the shape of ``target_name``'s temporaries (and no other's)."""
    return re.fullmatch(rf"\.{re.escape(target_name)}\.{_TOKEN}\.tmp", candidate) is not None


def create_temp_file(target: Path) -> tuple[int, Path]:
    """A new temporary beside ``target``, open for writing and locked; returns (fd, path)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned_temps(target)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    while True:
        path = temp_name(target)
        try:
            fd = os.open(path, flags, 0o666)
        except FileExistsError:
            continue
        if _locked_and_still_there(fd, path):
            return fd, path


def create_temp_dir(target: Path) -> tuple[int, Path]:
    """A new temporary folder beside ``target``, locked through the returned fd."""
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned_temps(target)
    while True:
        path = temp_name(target)
        try:
            path.mkdir(0o777)
        except FileExistsError:
            continue
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        if _locked_and_still_there(fd, path):
            return fd, path


def _locked_and_still_there(fd: int, path: Path) -> bool:
    """Lock ``fd``; False (fd closed) when a cleanup removed it between creation and the lock."""
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a cleanup holds it only for as long as it removes
    if _names(fd, path):
        return True
    os.close(fd)
    return False


def _names(fd: int, path: Path) -> bool:
    """Whether ``path`` is still the file or folder open as ``fd``."""
    try:
        return os.path.samestat(os.fstat(fd), os.lstat(path))
    except FileNotFoundError:
        return False


def remove_abandoned_temps(target: Path) -> list[Path]:
    """Remove ``target``'s temporaries whose writer is gone; returns what was removed.

    Only names of exactly ``target``'s temporary shape are considered, and of
    those only the ones this process may lock for writing and whose lock is
    free: another target's temporary, a user's file or a live writer's are kept.
    """
    if fcntl is None:
        return []
    try:
        entries = list(os.scandir(target.parent))
    except (FileNotFoundError, NotADirectoryError):
        return []
    removed = []
    for entry in entries:
        if is_temp_of(entry.name, target.name) and _remove_if_abandoned(Path(entry.path)):
            removed.append(Path(entry.path))
    return removed


def _remove_if_abandoned(path: Path) -> bool:
    is_dir = path.is_dir() and not path.is_symlink()
    try:
        # An exclusive lock over NFS needs a file open for writing; a folder cannot be,
        # so on NFS a folder's lock attempt fails and the folder is kept.
        mode = os.O_RDONLY if is_dir else os.O_WRONLY | os.O_NONBLOCK
        fd = os.open(path, mode | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # held: its writer is alive (or the lock cannot be taken here)
        os.close(fd)
        return False
    try:
        if not _names(fd, path):  # its writer renamed it into place before letting go
            return False
        if is_dir:
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    finally:
        os.close(fd)
    return True
