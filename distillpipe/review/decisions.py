"""``RUN_DIR/review.jsonl``: every review decision, one JSON line each, append-only.

A decision is appended under an exclusive ``flock`` and flushed to disk (``fsync``)
before the writer returns, so a decision the page confirmed survives a killed
server, and two servers (or tabs) on the same run never interleave lines. The
last decision per record wins; a line a crash cut short (no newline: never
confirmed) is ignored when read and cut off by the next writer.

Each decision carries ``reviewed``: a hash of the teacher's responses the
reviewer saw, so a decision about answers a later run replaced is not applied
to the new ones (the review filter counts it as stale).
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from distillpipe.errors import InputError
from distillpipe.records import content_hash

DECISIONS_FILE = "review.jsonl"
HUMAN_EDITED = "human-edited"  # a response's provenance when a reviewer wrote it
REASONS = ("wrong", "unsafe", "low quality", "off-topic", "formatting", "custom")
Action = Literal["accept", "reject", "edit", "pick", "skip"]
KEEPS = frozenset({"accept", "edit", "pick"})  # the record belongs in the dataset


class Decision(BaseModel):
    """One reviewer decision about one record."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=200)
    decision: Action
    reason: Literal[REASONS] | None = None  # type: ignore[valid-type]
    note: str = Field("", max_length=10_000)
    text: str | None = Field(None, max_length=200_000)  # edit: the new chosen response
    chosen: int | None = Field(None, ge=0)  # pick: the sample; edit: the one edited
    reviewed: str | None = None  # responses_hash of what the reviewer saw
    reviewer: str | None = Field(None, max_length=200)
    source: str = "page"
    at: float = Field(default_factory=time.time)

    @model_validator(mode="after")
    def _complete(self) -> Decision:
        if self.decision == "reject" and self.reason is None:
            raise ValueError("a reject needs a reason: one of " + ", ".join(REASONS))
        if self.decision == "reject" and self.reason == "custom" and not self.note.strip():
            raise ValueError("a custom reject reason needs a note saying what is wrong")
        if self.decision == "edit" and not (self.text or "").strip():
            raise ValueError("an edit needs the new response text")
        if self.decision == "pick" and self.chosen is None:
            raise ValueError("a pick needs the sample chosen")
        return self

    @property
    def keeps(self) -> bool:
        return self.decision in KEEPS

    def reason_text(self) -> str:
        """How a human reject reads in the rejected file: the tag, then the note."""
        tag = self.reason or "rejected"
        return f"reviewer: {tag}" + (f": {self.note.strip()}" if self.note.strip() else "")


def responses_hash(record: dict[str, Any]) -> str:
    """What a decision is about: the texts of the teacher's samples (a reviewer's own
    edit, added by the review filter, is left out so a re-review matches)."""
    texts = [
        r.get("text") for r in record.get("responses") or [] if r.get("provenance") != HUMAN_EDITED
    ]
    return content_hash(texts)


def append_decisions(path: Path, decisions: Iterable[Decision]) -> int:
    """Append under an exclusive lock and fsync before returning; returns how many."""
    lines = b"".join(orjson.dumps(d.model_dump(exclude_none=True)) + b"\n" for d in decisions)
    if not lines:
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        _drop_torn_line(fd)
        written = 0
        while written < len(lines):
            written += os.write(fd, lines[written:])
        os.fsync(fd)
    finally:
        os.close(fd)  # closing releases the lock
    return lines.count(b"\n")


def _drop_torn_line(fd: int) -> None:
    """Cut what a writer killed mid-line left after the last newline (never confirmed:
    a decision is confirmed only once its whole line is on disk)."""
    size = os.fstat(fd).st_size
    if not size or os.pread(fd, 1, size - 1) == b"\n":
        return
    start = max(0, size - (1 << 20))
    tail = os.pread(fd, size - start, start)
    cut = tail.rfind(b"\n")
    os.ftruncate(fd, start + cut + 1 if cut >= 0 else 0 if start == 0 else size)


def iter_decisions(path: Path) -> Iterator[tuple[int, Decision]]:
    """Every decision with its line number, in file order; a torn last line is skipped."""
    if not path.is_file():
        return
    with path.open("rb") as stream:
        fcntl.flock(stream.fileno(), fcntl.LOCK_SH)
        data = stream.read()
    lines = data.split(b"\n")
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        complete = lineno < len(lines)  # the part after the last newline may be torn
        try:
            yield lineno, Decision.model_validate(orjson.loads(line))
        except (orjson.JSONDecodeError, ValidationError) as exc:
            if not complete:
                continue
            first = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
            raise InputError(f"{path}:{lineno}: not a review decision: {first}") from None


def latest_decisions(path: Path) -> dict[str, Decision]:
    """The last decision per record id (the file's order is the order they were made)."""
    latest: dict[str, Decision] = {}
    for _, decision in iter_decisions(path):
        latest[decision.id] = decision
    return latest
