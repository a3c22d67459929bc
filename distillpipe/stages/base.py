"""The stage contract: a ``name``, its ``position`` in the pipeline, its config
``section``, the sections it reads, and ``run``.

``section`` is the config section that switches the stage on for
``distillpipe run`` (None there = not run); ``config_sections`` are the
sections whose hash decides whether a finished stage must be redone. Stages
register as entry points; a plug-in stage's section is validated by its own
``Options`` (see registry.py).

``run(records, ctx)`` takes an iterator of input records and yields output
records. A stage that talks to a teacher is an async generator, so every
teacher call of the stage runs in one event loop (connection pools live there).
The runner drains it into an atomic writer and records its stats.

For its progress bar a stage may also say what it expects from ``records``
input records: ``expected_calls(config, records)`` teacher calls and
``expected_records(config, records)`` records written (None: cannot tell).
Without them a stage is taken to write a record per input record and to
make no teacher calls it can count ahead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from distillpipe.cache import ResponseCache
from distillpipe.config import Config
from distillpipe.dispatch import Dispatcher
from distillpipe.io import JsonlWriter
from distillpipe.progress import Mode, message
from distillpipe.teachers.base import Budget, Teacher, TeacherContext, report_nothing, teacher_class
from distillpipe.teachers.cost import BudgetGuard, Price, is_batch, price_for_teacher

Record = dict[str, Any]


def build_teacher(
    config: Config,
    *,
    budget: Budget | None = None,
    state_dir: Path | None = None,
    report: Callable[[str], None] = report_nothing,
) -> Teacher:
    """The config's teacher, handed everything it needs; its logs go to the run directory."""
    log_dir = Path(config.run_dir) / config.name
    context = TeacherContext(budget=budget, state_dir=state_dir, report=report, log_dir=log_dir)
    return teacher_class(config.teacher.backend)(config.teacher, context)


def price_overrides(config: Config) -> dict[str, Price]:
    """The config's ``cost.prices`` rows, which win over the built-in table."""
    return {model: Price(**row.model_dump()) for model, row in config.cost.prices.items()}


@dataclass
class StageContext:
    config: Config
    progress_mode: Mode = "quiet"
    rejected: JsonlWriter | None = None
    output_path: Path | None = None  # None for stdout; stages that write beside it use it
    stats: dict[str, Any] = field(default_factory=dict)
    _teacher: Teacher | None = None
    _cache: ResponseCache | None = None
    _dispatcher: Dispatcher | None = None
    on_call_done: Callable[[bool], None] | None = None  # given whether the cache answered
    budget: BudgetGuard | None = None
    state_dir: Path | None = None
    stage: str = ""  # the stage's name, under which the budget's ledger records its spending

    def dispatcher(self) -> Dispatcher:
        """The cached teacher; built on first use so stages without one load nothing."""
        if self._dispatcher is None:
            self._teacher = build_teacher(
                self.config,
                budget=self.budget,
                state_dir=self.state_dir,
                report=lambda text: message(self.progress_mode, text),
            )
            if self.config.cache.enabled:
                self._cache = ResponseCache(self.config.cache.path)
            self._dispatcher = Dispatcher(self._teacher, self._cache, self.config.seed)
            self._attach_cost(self._teacher, self._dispatcher)
            if self.on_call_done is not None:
                tick = self.on_call_done
                self._dispatcher.on_call_done = lambda completion, cached: tick(cached)
        return self._dispatcher

    def _attach_cost(self, teacher: Teacher, dispatcher: Dispatcher) -> None:
        price = price_for_teacher(teacher, price_overrides(self.config))
        if price is not None:
            batch = is_batch(teacher)
            dispatcher.price = lambda c: price.cost(
                c.prompt_tokens, c.completion_tokens, batch=batch
            )
        if self.budget is not None:
            self.budget.attach(teacher, price, self.stage)

    def reject(self, record: Record, *, filter: str, reason: str, score: Any = None) -> None:
        """Send a record to the rejected file: never dropped, always with its reason."""
        if self.rejected is not None:
            self.rejected.write(
                {**record, "reject": {"filter": filter, "reason": reason, "score": score}}
            )
        counts = self.stats.setdefault("rejected", {})
        counts[filter] = counts.get(filter, 0) + 1

    async def aclose(self) -> None:
        if self._teacher is not None:
            await self._teacher.aclose()
        if self._cache is not None:
            self._cache.close()


def expected_counts(
    stage: Stage, config: Config, records: int | None
) -> tuple[int | None, int | None]:
    """(records written, teacher calls) ``stage`` expects from ``records`` input records."""
    expected_records = getattr(stage, "expected_records", None)
    expected_calls = getattr(stage, "expected_calls", None)
    return (
        expected_records(config, records) if expected_records else records,
        expected_calls(config, records) if expected_calls and records is not None else None,
    )


class Stage(Protocol):
    name: ClassVar[str]
    position: ClassVar[int]  # where ``distillpipe run`` chains it: seed 100 … export 500
    section: ClassVar[str]
    config_sections: ClassVar[tuple[str, ...]]
    prompt_folders: ClassVar[tuple[str, ...]]  # top folders of the prompt files it reads

    def run(
        self, records: Iterator[Record], ctx: StageContext
    ) -> Iterator[Record] | AsyncIterator[Record]: ...
