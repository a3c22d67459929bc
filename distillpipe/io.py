"""Streaming JSONL in and out: a path, ``-`` for stdin/stdout, ``.gz`` either way.

Reading is lazy (memory stays flat however many rows there are) and a bad
line raises an InputError naming ``file:line``. Writing goes to a temporary
file beside the target that is renamed into place only when the writer closes
cleanly, so a failed or killed stage never leaves a half-written output (and
the next writer of the same target removes what a killed one left: temps.py).
A truncated or corrupt ``.gz`` input is an InputError naming the line where
the readable data stops.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import sys
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from distillpipe.errors import InputError
from distillpipe.records import ensure_id
from distillpipe.temps import create_temp_file

STDIO = "-"


def _open_binary_for_reading(path: str | Path) -> IO[bytes]:
    if str(path) == STDIO:
        return sys.stdin.buffer
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.suffix == ".gz":
        return gzip.open(path, "rb")
    return path.open("rb")


def source_name(path: str | Path) -> str:
    """How errors name an input: its path, or ``<stdin>`` for ``-``."""
    return "<stdin>" if str(path) == STDIO else str(path)


def numbered_objects(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line number, JSON object)`` for each line; blank lines are skipped."""
    name = source_name(path)
    stream = _open_binary_for_reading(path)
    lineno = 0
    try:
        for lineno, line in enumerate(stream, start=1):
            try:
                value = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                if not line.strip():
                    continue
                raise InputError(f"{name}:{lineno}: invalid JSON: {exc}") from None
            if type(value) is not dict:
                kind = type(value).__name__
                raise InputError(f"{name}:{lineno}: expected a JSON object, got {kind}")
            yield lineno, value
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:  # raised by reading the next line
        damage = "truncated" if isinstance(exc, EOFError) else "corrupt"
        raise InputError(f"{name}:{lineno + 1}: {damage} gzip input ({exc})") from None
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield each line's JSON object, for files whose lines may be any object."""
    for _, value in numbered_objects(path):
        yield value


class NumberedRecord(dict[str, Any]):
    """A record that knows the input line it came from, as ``.line``: an attribute, not a
    field, so JSON, ``{**record}`` and every writer see the plain dict and no output
    carries it."""

    __slots__ = ("line",)

    def __init__(self, value: dict[str, Any], line: int) -> None:
        super().__init__(value)
        self.line = line


def numbered_records(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, record)``: records carry an ``instruction`` string and their stable id."""
    for lineno, value in numbered_objects(path):
        instruction = value.get("instruction")
        if type(instruction) is not str or not instruction or instruction.isspace():
            raise InputError(f"{source_name(path)}:{lineno}: record has no 'instruction' string")
        yield lineno, ensure_id(value)


def read_records(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield records that carry an ``instruction`` string, giving each its stable id."""
    for _, record in numbered_records(path):
        yield record


def read_records_with_lines(path: str | Path) -> Iterator[dict[str, Any]]:
    """As :func:`read_records`, each record a :class:`NumberedRecord` naming its line."""
    for lineno, record in numbered_records(path):
        yield NumberedRecord(record, lineno)


def input_line(record: dict[str, Any]) -> int | None:
    """The input line a record was read from, when its reader noted one."""
    return record.line if isinstance(record, NumberedRecord) else None


class JsonlWriter:
    """Write one JSON object per line; atomic for paths, direct for stdout."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self.count = 0
        self._tmp: str | None = None
        if self.path == STDIO:
            self._stream: IO[bytes] = sys.stdout.buffer
            return
        raw, self._tmp = _temp_beside(Path(self.path))
        self._raw = raw
        gzipped = self.path.endswith(".gz")
        self._stream = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) if gzipped else raw

    def write(self, record: dict[str, Any]) -> None:
        self._stream.write(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
        self.count += 1

    def write_many(self, records: Iterable[dict[str, Any]]) -> None:
        for record in records:
            self.write(record)

    def commit(self) -> None:
        if self._tmp is None:
            self._stream.flush()
            return
        if self._stream is not self._raw:
            self._stream.close()  # the gzip trailer; the file stays open (and locked)
        self._raw.flush()
        os.replace(self._tmp, self.path)  # before closing: a closed temp's lock is free
        self._raw.close()
        self._tmp = None

    def abort(self) -> None:
        if self._tmp is None:
            return
        with contextlib.suppress(Exception):
            self._stream.close()
            self._raw.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)
        self._tmp = None

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def write_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> int:
    with JsonlWriter(path) as writer:
        writer.write_many(records)
    return writer.count


def file_hash(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as stream:
        while block := stream.read(1 << 20):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


def tree_hash(folder: str | Path) -> str:
    """A content hash of a folder: each file's relative path and hash, in sorted order.

    Hidden files and folders (``.git``, a writer's temporaries) are left out, as
    ``datasets`` leaves them out of what it loads.
    """
    digest = hashlib.sha256()
    files = []
    for root, folders, names in os.walk(folder):
        folders[:] = [name for name in folders if not name.startswith(".")]
        relative = Path(root).relative_to(folder)
        files += [(relative / name).as_posix() for name in names if not name.startswith(".")]
    for name in sorted(files):
        digest.update(f"{name}\0{file_hash(Path(folder) / name)}\n".encode())
    return "sha256:" + digest.hexdigest()


def _temp_beside(target: Path) -> tuple[IO[bytes], str]:
    """A temporary file in the target's folder, so the final rename is atomic."""
    fd, tmp = create_temp_file(target)
    return os.fdopen(fd, "wb"), str(tmp)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    stream, tmp = _temp_beside(Path(path))
    try:
        with stream:
            stream.write(data)
            stream.flush()
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


__all__ = [
    "STDIO",
    "JsonlWriter",
    "atomic_write_bytes",
    "file_hash",
    "numbered_objects",
    "read_jsonl",
    "read_records",
    "source_name",
    "tree_hash",
    "write_jsonl",
]
