"""What a run has spent on teacher calls, kept across reruns: an append-only ledger.

``<run dir>/spend.jsonl`` (``.<output>.spend.jsonl`` beside a stage command's
output) gets one line per paid call as it settles, ``{"stage": "generate",
"usd": 0.00012}`` (and ``"teacher": NAME`` for a panel member's), in one
unbuffered ``write`` and no fsync: the event loop
never waits on the disk, and a process killed with SIGKILL loses nothing it
settled (the kernel holds the bytes; only a power loss can drop the last
lines). A last line torn by a kill is skipped when the ledger is read, and cut
off before the next invocation appends.

A rerun reads the ledger first, so ``--max-cost`` (and a panel member's
``max_cost``) is the run's budget across invocations. A long ledger is folded
into one line per stage and member when opened.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import orjson

from distillpipe.errors import InputError
from distillpipe.io import atomic_write_bytes

FOLD_AFTER_LINES = 10_000


class SpendLedger:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.before: dict[str, float] = {}
        """USD per stage spent by earlier invocations, as read when opened."""
        self.before_by_teacher: dict[str, float] = {}
        """USD per panel member spent by earlier invocations."""
        self._rows: dict[tuple[str, str | None], float] = {}
        self._fd: int | None = None
        lines = self._read()
        if lines > FOLD_AFTER_LINES:
            self._fold()

    def total_before(self) -> float:
        return sum(self.before.values())

    def record(self, stage: str, usd: float, teacher: str | None = None) -> None:
        """Append one settled call's cost (the file is created on the first one)."""
        if self._fd is None:
            self._fd = self._open()
        os.write(self._fd, orjson.dumps(_row(stage, usd, teacher)) + b"\n")

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _read(self) -> int:
        if not self.path.exists():
            return 0
        spent: defaultdict[tuple[str, str | None], float] = defaultdict(float)
        lines = self.path.read_bytes().split(b"\n")
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = orjson.loads(line)
                teacher = row.get("teacher")
                spent[str(row["stage"]), None if teacher is None else str(teacher)] += float(
                    row["usd"]
                )
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                if number == len(lines):  # the last line, torn by a kill mid-write
                    continue
                raise InputError(
                    f"{self.path}:{number}: not a spend record (expected "
                    '{"stage": ..., "usd": ...}); fix or delete the line'
                ) from None
        self._rows = dict(spent)
        by_stage: defaultdict[str, float] = defaultdict(float)
        by_teacher: defaultdict[str, float] = defaultdict(float)
        for (stage, teacher), usd in spent.items():
            by_stage[stage] += usd
            if teacher is not None:
                by_teacher[teacher] += usd
        self.before, self.before_by_teacher = dict(by_stage), dict(by_teacher)
        return len(lines)

    def _fold(self) -> None:
        rows = [orjson.dumps(_row(s, usd, t)) + b"\n" for (s, t), usd in self._rows.items()]
        atomic_write_bytes(self.path, b"".join(rows))

    def _open(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        content = self.path.read_bytes()
        if content and not content.endswith(b"\n"):  # a torn last line: cut it off
            os.ftruncate(fd, content.rfind(b"\n") + 1)
        return fd

    def __del__(self) -> None:
        self.close()


def _row(stage: str, usd: float, teacher: str | None) -> dict[str, object]:
    return (
        {"stage": stage, "usd": usd}
        if teacher is None
        else {"stage": stage, "teacher": teacher, "usd": usd}
    )
