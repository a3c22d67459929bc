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
from distillpipe.teachers.base import (
    Budget,
    Teacher,
    TeacherContext,
    TeacherOptions,
    report_nothing,
    teacher_class,
)
from distillpipe.teachers.cost import (
    BudgetGuard,
    Price,
    TeacherBudget,
    TeacherPricing,
    price_for_teacher,
)
from distillpipe.teachers.panel import Panel

Record = dict[str, Any]


def build_teacher(
    config: Config,
    *,
    budget: Budget | None = None,
    state_dir: Path | None = None,
    report: Callable[[str], None] = report_nothing,
    options: TeacherOptions | None = None,
) -> Teacher:
    """The config's teacher (or the panel member's ``options``), handed everything it
    needs; its logs go to the run directory."""
    log_dir = Path(config.run_dir) / config.name
    context = TeacherContext(budget=budget, state_dir=state_dir, report=report, log_dir=log_dir)
    options = options or config.teacher
    return teacher_class(options.backend)(options, context)


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
    _dispatcher: Dispatcher | None = None  # the first one built
    _dispatchers: dict[str, Dispatcher] = field(default_factory=dict)  # by panel member
    member_budgets: dict[str, TeacherBudget] = field(default_factory=dict)
    on_call_done: Callable[[bool], None] | None = None  # given whether the cache answered
    budget: BudgetGuard | None = None
    state_dir: Path | None = None
    stage: str = ""  # the stage's name, under which the budget's ledger records its spending
    _teachers: list[Teacher] = field(default_factory=list)

    @property
    def panel(self) -> Panel:
        return Panel.from_config(self.config)

    def dispatcher(self, member: str | None = None) -> Dispatcher:
        """The cached teacher (the panel member named ``member``, default the first);
        built on first use so stages without one load nothing."""
        name = self.panel.member(member).name
        if name not in self._dispatchers:
            handed_in = self._dispatcher is not None and not self._dispatchers  # estimate's
            if handed_in and name == self.panel.member().name:
                self._dispatchers[name] = self._dispatcher  # type: ignore[assignment]
            else:
                self._dispatchers[name] = self._build_dispatcher(name)
        return self._dispatchers[name]

    def dispatchers(self) -> dict[str, Dispatcher]:
        """Every panel member's dispatcher, by name, in panel order."""
        return {name: self.dispatcher(name) for name in self.panel.names}

    def _build_dispatcher(self, name: str) -> Dispatcher:
        member = self.panel.member(name)
        teacher_options = None if self.config.teachers is None else member.teacher
        budget: Budget | None = self.budget
        if self.config.teachers is not None:  # each member prices its own calls
            budget = _LateBudget()
        teacher = build_teacher(
            self.config,
            budget=budget,
            state_dir=self.state_dir if self.config.teachers is None else self._member_state(name),
            report=lambda text: message(self.progress_mode, text),
            options=teacher_options,
        )
        if self._cache is None and self.config.cache.enabled:
            self._cache = ResponseCache(self.config.cache.path)
        dispatcher = Dispatcher(teacher, self._cache, self.config.seed)
        if self._dispatcher is None:
            self._teacher, self._dispatcher = teacher, dispatcher
        self._teachers.append(teacher)
        if isinstance(budget, _LateBudget):
            price = price_for_teacher(teacher, price_overrides(self.config))
            self._attach_price(teacher, dispatcher, price)
            budget.inner = self.member_budgets[name] = TeacherBudget(
                name, member.max_cost, self.budget, teacher, price, self.stage
            )
        else:
            self._attach_cost(teacher, dispatcher)
        if self.on_call_done is not None:
            tick = self.on_call_done
            dispatcher.on_call_done = lambda completion, cached: tick(cached)
        return dispatcher

    def _member_state(self, name: str) -> Path | None:
        """A member's own batch journal folder: its provider batches are its own."""
        return None if self.state_dir is None else self.state_dir / name

    def _attach_price(self, teacher: Teacher, dispatcher: Dispatcher, price: Price | None) -> None:
        if price is not None:
            dispatcher.price = TeacherPricing.of(teacher, price).cost

    def _attach_cost(self, teacher: Teacher, dispatcher: Dispatcher) -> None:
        price = price_for_teacher(teacher, price_overrides(self.config))
        self._attach_price(teacher, dispatcher, price)
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
        for teacher in self._teachers:
            await teacher.aclose()
        self._teachers.clear()
        if self._cache is not None:
            self._cache.close()


class _LateBudget:
    """A panel member's budget, handed to its teacher before the member's price is known
    (the price is the built teacher's): a ``TeacherBudget`` once set."""

    inner: TeacherBudget | None = None

    def reserve(self, call, payload_bytes: int = 0) -> float:
        return self.inner.reserve(call, payload_bytes) if self.inner is not None else 0.0

    def settle(self, reserved: float, completion) -> None:
        if self.inner is not None:
            self.inner.settle(reserved, completion)


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
