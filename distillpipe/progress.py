"""Progress on stderr: a rich bar on a terminal, plain lines otherwise, nothing with --quiet.

A teacher stage moves in teacher calls, so where the stage knows how many it
makes (records × n for generate) the bar counts calls and shows the records
written beside them: ``12/32 calls, 3/16 records, 2.1 calls/s, ETA 0:00:10``.
Calls the cache answers count as done, but the rate and the ETA come from the
teacher calls alone: a replay of cached calls takes no time, and counting it
would promise the remaining (uncached) calls at cache speed.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Literal

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

Mode = Literal["rich", "plain", "quiet"]

# Off a terminal rich would wrap at 80 columns; logs read better wider.
stderr = Console(
    stderr=True, highlight=False, soft_wrap=True, width=None if sys.stderr.isatty() else 140
)


def default_mode(quiet: bool) -> Mode:
    if quiet:
        return "quiet"
    return "rich" if sys.stderr.isatty() else "plain"


class StageProgress:
    """Counts one stage's teacher calls and records written.

    ``records`` and ``calls`` are the totals expected (None: unknown); the bar
    moves in calls when their total is known, else in records. ``extra``
    supplies a live suffix (tokens, hits, cost).
    """

    FIRST_PLAIN_LINE_SECONDS = 1.0  # soon enough to show that calls complete
    PLAIN_EVERY_SECONDS = 5.0
    BAR_EVERY_SECONDS = 0.1  # rich redraws at 10 Hz; an update per call cost ~3 µs

    def __init__(
        self,
        mode: Mode,
        stage: str,
        records: int | None = None,
        *,
        calls: int | None = None,
        extra: Callable[[], str] | None = None,
    ) -> None:
        self.mode, self.stage, self.extra = mode, stage, extra
        self.records_total, self.calls_total = records, calls
        self.records = 0  # written
        self.calls = 0  # done, cached ones included
        self.teacher_calls = 0  # done by the teacher: what takes time
        self.finished = False  # a total can be an upper bound: a finished stage has no ETA
        self._started = time.perf_counter()
        self._every = self.BAR_EVERY_SECONDS if mode == "rich" else self.PLAIN_EVERY_SECONDS
        first = self.BAR_EVERY_SECONDS if mode == "rich" else self.FIRST_PLAIN_LINE_SECONDS
        # quiet never shows anything: its next showing never comes
        self._next_shown = self._started + first if mode != "quiet" else float("inf")
        self._bar: Progress | None = None
        if mode == "rich":
            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[status]}"),
                TextColumn("{task.fields[extra]}"),
                console=stderr,
                transient=False,
            )
            self._task = self._bar.add_task(stage, total=self._total(), status="", extra="")
            self._bar.start()

    def call_done(self, cached: bool = False) -> None:
        """A teacher call finished (or the cache answered it): the hot path, kept cheap."""
        self.calls += 1
        if not cached:
            self.teacher_calls += 1
        now = time.perf_counter()
        if now >= self._next_shown:
            self._show(now)

    def advance(self, n: int = 1) -> None:
        """``n`` records were written."""
        self.records += n
        now = time.perf_counter()
        if now >= self._next_shown:
            self._show(now)

    def status(self, elapsed: float) -> str:
        """The counts, the rate and the ETA after ``elapsed`` seconds, as one line's text.

        A stage that calls a teacher is timed in teacher calls; the ETA needs
        the total of the unit timed, so a stage whose call count is unknown
        (seed) gets none.
        """
        in_calls = self.calls_total is not None or self.calls > 0
        parts = []
        if in_calls:
            parts.append(f"{self.calls:,}{_of(self.calls_total)} calls")
        if not in_calls or self.records or self.records_total is not None:
            parts.append(f"{self.records:,}{_of(self.records_total)} records")
        if in_calls:
            unit, done, total, timed = "calls", self.calls, self.calls_total, self.teacher_calls
        else:
            unit, done, total, timed = "records", self.records, self.records_total, self.records
        rate = timed / max(elapsed, 1e-9)
        parts.append(f"{_per_second(rate)} {unit}/s")
        if not self.finished and total is not None and done < total and rate > 0:
            parts.append(f"ETA {timedelta(seconds=round((total - done) / rate))}")
        return ", ".join(parts)

    def _total(self) -> int | None:
        return self.calls_total if self.calls_total is not None else self.records_total

    def _completed(self) -> int:
        return self.calls if self.calls_total is not None else self.records

    def _show(self, now: float) -> None:
        self._next_shown = now + self._every
        if self._bar is not None:
            self._show_bar(now)
        elif self.mode == "plain":
            self._plain_line(now)

    def _show_bar(self, now: float) -> None:
        assert self._bar is not None
        completed = self._completed()
        total = completed if self.finished else self._total()  # an upper bound not reached
        extra = self.extra() if self.extra else ""
        self._bar.update(
            self._task,
            completed=completed,
            total=total,
            status=self.status(now - self._started),
            extra=extra,
        )

    def _plain_line(self, now: float) -> None:
        extra = f", {self.extra()}" if self.extra else ""
        line = f"[{self.stage}] {self.status(now - self._started)}{extra}"
        print(line, file=sys.stderr, flush=True)

    def close(self, *, finished: bool = True) -> None:
        """Stop the bar; in plain mode a finished stage gets its final count line."""
        self.finished = finished
        if self._bar is not None:
            self._show_bar(time.perf_counter())
            self._bar.stop()
        elif self.mode == "plain" and finished:
            self._plain_line(time.perf_counter())


def _of(total: int | None) -> str:
    return f"/{total:,}" if total is not None else ""


def _per_second(rate: float) -> str:
    """One decimal, or two significant digits for a slow teacher (0.025, not 0.0)."""
    return f"{rate:,.1f}" if rate >= 1 or rate == 0 else f"{rate:.2g}"


def message(mode: Mode, text: str) -> None:
    if mode != "quiet":
        stderr.print(text)
