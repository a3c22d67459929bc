"""The one protocol every filter speaks, and the registry that finds them.

A filter works in two steps so that the expensive part scales out:

    score(records) -> scores     PURE and per batch: no global state, any model
                                 loaded lazily once per process (``self.load()``),
                                 so it can run in a worker or a Ray actor.
    decide(record, score)        on the driver, in input order: keep or reject
        -> Verdict               with a reason, the value written to
                                 ``scores.<name>``, and optionally a selection.

Filters that need the whole run before deciding say so with
``needs_all_scores`` (percentile thresholds): the stage then scores every
record first and calls ``fit(values)`` on the driver. Filters whose decision
carries state from record to record (dedup keeps the first occurrence) set
``stateful_decide``: their ``decide`` must run on the driver in input order,
which is where the stage always runs it. Filters whose reasons name an input
line (dedup's first occurrence) set ``needs_input_lines``: the stage then
reads records that know their line (``io.input_line``).

To scale out, an executor builds the same filter in each worker
(``build_filter(options, config)``: options and config pickle) and calls
``score`` / ``ascore`` there; ``FilterStage.score_batch`` is the one place the
stage hands a batch over. Filters that ask a teacher (``uses_teacher``) get a
dispatcher through ``attach_dispatcher`` wherever they score.

A filter that can judge single samples (reference, execution, reward without
percentiles) says so in ``passing(score)``: ``generate.until`` samples a record
until enough of them pass.

A filter may add fields to its entry in the run's stats (``stats()``: the
execution filter reports its sandbox's isolation level there).

A filter that reads files besides its records (the review filter's decisions)
names them in its options' ``files_read(config)``: their content enters the
filter stage's hash, so the stage is redone when they change. A filter that may
keep a record another filter rejected (``can_overrule``: a reviewer's accept)
answers ``overrules(record, rejected_by)``, asked by the stage on every reject.

A filter is one module plus one ``distillpipe.filters`` entry point (``type`` →
module:class) in a pyproject: distillpipe's own for the built-ins.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from distillpipe import registry
from distillpipe.registry import load_plugin

if TYPE_CHECKING:
    from distillpipe.config import Config
    from distillpipe.dispatch import Dispatcher
    from distillpipe.teachers.base import SamplingParams

Record = dict[str, Any]

_PERCENTILE = re.compile(r"^p(\d{1,2}(?:\.\d+)?|100)$")


class Threshold(BaseModel):
    """An absolute number, or ``pNN``: the NN-th percentile of this run's own scores."""

    model_config = ConfigDict(frozen=True)
    value: float | None = None
    percentile: float | None = None

    @classmethod
    def parse(cls, raw: float | str | None) -> Threshold | None:
        if raw is None:
            return None
        if isinstance(raw, int | float):
            return cls(value=float(raw))
        match = _PERCENTILE.match(str(raw).strip())
        if not match:
            raise ValueError(f"expected a number or a percentile like 'p30', got {raw!r}")
        return cls(percentile=float(match.group(1)))


ThresholdSpec = float | str | None


class FilterOptions(BaseModel):
    """Options every filter shares; each filter subclasses this as ``Options``."""

    model_config = ConfigDict(extra="forbid")

    type: str
    name: str | None = Field(None, description="the key under scores; default: the type")
    batch_size: int = Field(256, ge=1, description="records per score() call")
    turns: Literal["each", "whole"] = Field(
        "each",
        description="conversations (records with messages): judge every assistant turn, or "
        "the whole conversation as one",
    )

    @property
    def filter_name(self) -> str:
        return self.name or self.type

    def optional_modules(self) -> dict[str, str]:
        """The optional imports these options need, each with the extra that installs it."""
        return {}

    def teacher_params(self) -> SamplingParams | None:
        """What the filter's teacher requests carry, for config validation; None: it asks none."""
        return None

    def files_read(self, config: Config) -> list[Path]:
        """Files whose content the filter's decisions depend on (beside its records)."""
        return []

    def cannot_judge_samples(self) -> str | None:
        """Why this filter cannot tell one sample from another (``generate.until`` needs
        that, through ``Filter.passing``); None when it can."""
        return f"a {self.type} filter judges whole records, not single samples"


class ThresholdOptions(FilterOptions):
    """For filters that keep a record when its value lies in [min, max]."""

    min: ThresholdSpec = Field(None, description="a number or a percentile like 'p10'")
    max: ThresholdSpec = Field(None, description="a number or a percentile like 'p90'")

    @field_validator("min", "max")
    @classmethod
    def _valid_threshold(cls, raw: ThresholdSpec) -> ThresholdSpec:
        Threshold.parse(raw)
        return raw


@dataclass(slots=True)
class Verdict:
    keep: bool
    reason: str | None = None
    score: Any = None  # written to scores.<name>
    selection: dict[str, Any] | None = None  # {"chosen": i, "rejected": j|None, "by": name}

    @classmethod
    def kept(cls, score: Any = None, selection: dict[str, Any] | None = None) -> Verdict:
        return cls(True, None, score, selection)

    @classmethod
    def rejected(cls, reason: str, score: Any = None) -> Verdict:
        return cls(False, reason, score)


class Filter(ABC):
    """A filter. Subclasses set ``type`` and ``Options`` and implement score and decide."""

    type: ClassVar[str]
    Options: ClassVar[type[FilterOptions]] = FilterOptions
    stateful_decide: ClassVar[bool] = False
    uses_teacher: ClassVar[bool] = False
    # decide() reads the record's input line (io.input_line); the stage then reads lines
    needs_input_lines: ClassVar[bool] = False
    # overrules() may keep a record that another filter rejected
    can_overrule: ClassVar[bool] = False

    def __init__(self, options: FilterOptions, config: Config | None = None) -> None:
        self.options = options
        self.config = config
        self.name = options.filter_name
        self._dispatcher: Dispatcher | None = None

    @property
    def needs_all_scores(self) -> bool:
        """True when decide() needs every score of the run first (percentile thresholds)."""
        return False

    def config_path(self) -> str | None:
        """Where this filter sits in the config (``filter.2``), to name its keys in errors."""
        filters = (self.config.filter or []) if self.config is not None else []
        names = [options.filter_name for options in filters]
        return f"filter.{names.index(self.name)}" if self.name in names else None

    def attach_dispatcher(self, dispatcher: Dispatcher) -> None:
        """For filters that ask a teacher (uses_teacher): the cached dispatcher to use."""
        self._dispatcher = dispatcher

    @abstractmethod
    def score(self, records: Sequence[Record]) -> list[Any]:
        """One score per record, in order. Pure: the same batch gives the same scores."""

    async def ascore(self, records: Sequence[Record]) -> list[Any]:
        """The async form the stage calls; teacher-backed filters override it."""
        return self.score(records)

    def value(self, score: Any) -> float | None:
        """The number a score stands for (thresholds, quantiles); None when it has none."""
        if isinstance(score, bool) or not isinstance(score, int | float):
            return None
        return float(score) if math.isfinite(score) else None

    def fit(self, values: Sequence[float | None]) -> None:  # noqa: B027 - optional hook
        """The global step, on the driver, when needs_all_scores: sees every value."""

    @abstractmethod
    def decide(self, record: Record, score: Any) -> Verdict:
        """Keep or reject one record given its score (driver, input order)."""

    def passing(self, score: Any) -> list[bool] | None:
        """Whether each sample passes, in order (``generate.until``'s test); None when
        the record cannot be judged (no reference). Filters whose options'
        ``cannot_judge_samples`` is None implement it."""
        raise NotImplementedError(f"filter {self.name} cannot judge single samples")

    def overrules(self, record: Record, rejected_by: str) -> bool:
        """Whether the record stays although the filter ``rejected_by`` rejected it
        (asked only of filters with ``can_overrule``)."""
        return False

    def stats(self) -> dict[str, Any]:
        """Extra fields for this filter's entry in the run's stats (isolation, cache hits)."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release models and files."""


class ThresholdFilter(Filter):
    """Keeps a record whose value lies within [min, max], each absolute or a percentile."""

    Options: ClassVar[type[FilterOptions]] = ThresholdOptions
    options: ThresholdOptions
    metric: ClassVar[str] = "score"

    def __init__(self, options: FilterOptions, config: Config | None = None) -> None:
        super().__init__(options, config)
        self.low = Threshold.parse(self.options.min)
        self.high = Threshold.parse(self.options.max)
        self.low_value = self.low.value if self.low else None
        self.high_value = self.high.value if self.high else None

    @property
    def needs_all_scores(self) -> bool:
        return any(t is not None and t.percentile is not None for t in (self.low, self.high))

    def fit(self, values: Sequence[float | None]) -> None:
        present = sorted(v for v in values if v is not None)
        if self.low and self.low.percentile is not None:
            self.low_value = percentile(present, self.low.percentile)
        if self.high and self.high.percentile is not None:
            self.high_value = percentile(present, self.high.percentile)

    def check(self, value: float | None) -> str | None:
        """The reason to reject ``value``, or None to keep it."""
        if value is None:
            return None
        if self.low_value is not None and value < self.low_value:
            return f"{self.metric} {value:.4g} < min {self.low_value:.4g}{self._pct(self.low)}"
        if self.high_value is not None and value > self.high_value:
            return f"{self.metric} {value:.4g} > max {self.high_value:.4g}{self._pct(self.high)}"
        return None

    @staticmethod
    def _pct(threshold: Threshold | None) -> str:
        if threshold is None or threshold.percentile is None:
            return ""
        return f" (p{threshold.percentile:g})"


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (numpy's default) of already sorted values."""
    if not sorted_values:
        return None
    position = (len(sorted_values) - 1) * q / 100.0
    lower = math.floor(position)
    upper = min(lower + 1, len(sorted_values) - 1)
    fraction = position - lower
    return sorted_values[lower] + (sorted_values[upper] - sorted_values[lower]) * fraction


def filter_class(type_name: str) -> type[Filter]:
    """A filter type by name, from the ``distillpipe.filters`` entry points."""
    return load_plugin(registry.FILTERS, type_name, f"filter type {type_name!r} unknown")


def build_filter(options: FilterOptions, config: Config | None = None) -> Filter:
    return filter_class(options.type)(options, config)


def primary_response(record: Record) -> tuple[int, dict[str, Any]] | None:
    """The response export would use: selection.chosen, else the first."""
    responses = record.get("responses") or []
    if not responses:
        return None
    chosen = (record.get("selection") or {}).get("chosen") or 0
    index = chosen if 0 <= chosen < len(responses) else 0
    return index, responses[index]


def verified_selection(
    record: Record, verified: Sequence[bool], answered: Sequence[bool], by: str
) -> dict[str, Any]:
    """chosen: a verified sample (the current pick when it is one); rejected: a failed
    one, preferring a sample that gave an answer over one that gave none."""
    current = (record.get("selection") or {}).get("chosen")
    if isinstance(current, int) and 0 <= current < len(verified) and verified[current]:
        chosen = current
    else:
        chosen = verified.index(True)
    failed = [i for i, ok in enumerate(verified) if not ok]
    wrong = [i for i in failed if answered[i]]
    rejected = (wrong or failed or [None])[0]
    return {"chosen": chosen, "rejected": rejected, "by": by}


ResponseScope = Literal["primary", "all"]


def responses_in_scope(
    record: Record, scope: ResponseScope
) -> Iterable[tuple[int, dict[str, Any]]]:
    """``(sample index, response)`` for every response, or for selection.chosen alone."""
    responses = record.get("responses") or ()
    if scope == "primary" and responses:
        chosen = (record.get("selection") or {}).get("chosen") or 0
        return enumerate(responses[chosen : chosen + 1], start=chosen)
    return enumerate(responses)
