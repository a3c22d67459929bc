"""Progress on stderr: a rich bar on a terminal, plain lines otherwise, nothing with --quiet."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Literal

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
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
    """Counts one stage's records; ``extra`` supplies a live suffix (tokens, hits, cost)."""

    PLAIN_EVERY_SECONDS = 5.0
    BAR_EVERY_SECONDS = 0.1  # rich redraws at 10 Hz; an update per record cost ~3 µs

    def __init__(
        self,
        mode: Mode,
        stage: str,
        total: int | None,
        extra: Callable[[], str] | None = None,
    ) -> None:
        self.mode, self.stage, self.total, self.extra = mode, stage, total, extra
        self.done = 0
        self._started = time.perf_counter()
        self._last_shown = self._started
        self._every = self.BAR_EVERY_SECONDS if mode == "rich" else self.PLAIN_EVERY_SECONDS
        self._bar: Progress | None = None
        if mode == "rich":
            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TaskProgressColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[extra]}"),
                console=stderr,
                transient=False,
            )
            self._task = self._bar.add_task(stage, total=total, rate="", extra="")
            self._bar.start()

    def tick(self) -> None:
        """Refresh without advancing: a teacher call finished inside a batch."""
        self.advance(0)

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.perf_counter()
        if now - self._last_shown < self._every:
            return
        self._last_shown = now
        if self._bar is not None:
            self._show_bar(now)
        elif self.mode == "plain":
            self._plain_line(now)

    def _show_bar(self, now: float) -> None:
        assert self._bar is not None
        rate = self.done / max(now - self._started, 1e-9)
        extra = self.extra() if self.extra else ""
        self._bar.update(self._task, completed=self.done, rate=f"{rate:,.1f}/s", extra=extra)

    def _plain_line(self, now: float) -> None:
        elapsed = now - self._started
        rate = self.done / max(elapsed, 1e-9)
        of = f"/{self.total}" if self.total is not None else ""
        eta = ""
        if self.total and rate > 0:
            eta = f", eta {max(self.total - self.done, 0) / rate:,.0f}s"
        extra = f", {self.extra()}" if self.extra else ""
        print(
            f"[{self.stage}] {self.done}{of} records, {rate:,.1f}/s{eta}{extra}",
            file=sys.stderr,
            flush=True,
        )

    def close(self, *, finished: bool = True) -> None:
        """Stop the bar; in plain mode a finished stage gets its final count line."""
        if self._bar is not None:
            self._show_bar(time.perf_counter())
            self._bar.stop()
        elif self.mode == "plain" and finished:
            self._plain_line(time.perf_counter())


def message(mode: Mode, text: str) -> None:
    if mode != "quiet":
        stderr.print(text)
