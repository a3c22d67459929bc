"""The ``filter`` stage: the configured filters, in order, over a stream of records.

Each filter scores a batch (``Filter.ascore``: pure, the part that scales
out), then decides record by record on the driver, in input order. A kept
record gets ``scores.<name>`` (and ``selection`` when the filter picks among
samples); a rejected one goes to the rejected file through ``ctx.reject``
with the same score, never dropped. Filters that need every score first
(percentile thresholds) hold their records until the input ends; the others
stream, so memory stays flat.

A filter that can overrule (the review filter: a reviewer accepted the record) is
asked before a reject is sent: when it overrules, the record stays and carries
``overruled: [{filter, reason, score, by}]`` instead.

Per-filter stats land in ``ctx.stats["filters"][name]``:
``{seen, kept, rejected, quantiles}``, plus what the filter adds (``Filter.stats``).
"""

from __future__ import annotations

import math
import random
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import Any, ClassVar

from distillpipe.config import Config
from distillpipe.filters.base import Filter, Verdict, build_filter, filter_class, percentile
from distillpipe.filters.turns import decide_with_turns, score_values, score_with_turns
from distillpipe.io import read_records, read_records_with_lines
from distillpipe.stages.base import Record, StageContext

QUANTILES = (0, 10, 25, 50, 75, 90, 100)
RESERVOIR = 10_000
DEFAULT_BATCH = 256


class FilterStats:
    """seen/kept/rejected counts and score quantiles (exact up to RESERVOIR values,
    then from a reservoir sample drawn from the config seed: memory stays flat).

    The reservoir is Li's Algorithm L: it draws how many values to skip, not a
    random number per value, so a long stream costs a counter increment per value.
    """

    def __init__(self, name: str, seed: int) -> None:
        self.seen = self.kept = self.rejected = self.scored = 0
        self.sample: list[float] = []
        self._rng = random.Random(f"{seed}:filter-stats:{name}")
        self._weight = 1.0
        self._next = RESERVOIR

    def add_values(self, values: Iterable[float | None]) -> None:
        for value in values:
            if value is None:
                continue
            self.scored += 1
            if self.scored <= RESERVOIR:
                self.sample.append(value)
                if self.scored == RESERVOIR:
                    self._skip()
            elif self.scored == self._next:
                self.sample[self._rng.randrange(RESERVOIR)] = value
                self._skip()

    def _skip(self) -> None:
        rng = self._rng
        self._weight *= math.exp(math.log(1.0 - rng.random()) / RESERVOIR)
        gap = math.floor(math.log(1.0 - rng.random()) / math.log1p(-self._weight))
        self._next += gap + 1

    def as_dict(self) -> dict[str, Any]:
        ordered = sorted(self.sample)
        quantiles = {f"p{q}": percentile(ordered, q) for q in QUANTILES} if ordered else {}
        return {
            "seen": self.seen,
            "kept": self.kept,
            "rejected": self.rejected,
            "quantiles": quantiles,
        }


class FilterStage:
    name: ClassVar[str] = "filter"
    position: ClassVar[int] = 400
    section: ClassVar[str] = "filter"
    config_sections: ClassVar[tuple[str, ...]] = ("seed", "teacher", "filter")
    # refusals and the judge's rubric; perplexity's ``prompt: template`` is generate's
    prompt_folders: ClassVar[tuple[str, ...]] = ("filters", "generate")

    @staticmethod
    def load_input(path: str | Path, config: Config) -> Iterator[Record]:
        """The input records; each knows its line (``io.input_line``) when a configured
        filter names lines in its reasons (dedup): only then is the copy paid for."""
        options = config.filter or []
        if any(filter_class(o.type).needs_input_lines for o in options):
            return read_records_with_lines(path)
        return read_records(path)

    @staticmethod
    def files_read(config: Config) -> list[Path]:
        """The files the configured filters read besides the records (in the stage hash)."""
        return [path for options in config.filter or [] for path in options.files_read(config)]

    async def score_batch(self, filter: Filter, batch: Sequence[Record]) -> list[Any]:
        """Where scoring runs: in process here; a distributed executor overrides this."""
        return await filter.ascore(batch)

    async def run(self, records: Iterator[Record], ctx: StageContext) -> AsyncIterator[Record]:
        filters = [build_filter(options, ctx.config) for options in ctx.config.filter or []]
        for filter in filters:
            if filter.uses_teacher:
                filter.attach_dispatcher(ctx.dispatcher(getattr(filter.options, "teacher", None)))
        stats = {f.name: FilterStats(f.name, ctx.config.seed) for f in filters}
        overrulers = [f for f in filters if f.can_overrule]
        # Batches, not records, flow from filter to filter: a per-record hop through
        # each async generator cost more than the length and heuristics checks themselves.
        first_size = filters[0].options.batch_size if filters else DEFAULT_BATCH
        stream: AsyncIterator[list[Record]] = _batched(records, first_size)
        for filter in filters:
            stream = self._apply(
                filter,
                _rebatched(stream, filter.options.batch_size),
                ctx,
                stats[filter.name],
                [o for o in overrulers if o is not filter],
            )
        try:
            async for batch in stream:
                for record in batch:
                    yield record
        finally:
            ctx.stats["filters"] = {
                f.name: {**stats[f.name].as_dict(), **f.stats()} for f in filters
            }
            for filter in filters:
                filter.close()

    async def _apply(
        self,
        filter: Filter,
        batches: AsyncIterator[list[Record]],
        ctx: StageContext,
        stats: FilterStats,
        overrulers: Sequence[Filter] = (),
    ) -> AsyncIterator[list[Record]]:
        if not filter.needs_all_scores:
            async for batch in batches:
                scores = await score_with_turns(filter, batch, self.score_batch)
                stats.add_values(score_values(filter, scores))
                if kept := self._decide(filter, batch, scores, ctx, stats, overrulers):
                    yield kept
            return
        records: list[Record] = []
        scores = []
        async for batch in batches:
            records.extend(batch)
            scores.extend(await score_with_turns(filter, batch, self.score_batch))
        values = score_values(filter, scores)
        stats.add_values(values)
        filter.fit(values)
        for start in range(0, len(records), filter.options.batch_size):
            end = start + filter.options.batch_size
            batch, batch_scores = records[start:end], scores[start:end]
            if kept := self._decide(filter, batch, batch_scores, ctx, stats, overrulers):
                yield kept

    @staticmethod
    def _decide(
        filter: Filter,
        batch: Sequence[Record],
        scores: Sequence[Any],
        ctx: StageContext,
        stats: FilterStats,
        overrulers: Sequence[Filter] = (),
    ) -> list[Record]:
        """The records of ``batch`` that ``filter`` keeps; the others go to the rejected file."""
        name = filter.name
        kept = []
        for record, score in zip(batch, scores, strict=True):
            verdict: Verdict = decide_with_turns(filter, record, score)
            if verdict.score is not None:
                if "scores" in record:
                    record["scores"][name] = verdict.score
                else:
                    record["scores"] = {name: verdict.score}
            if verdict.selection is not None:
                record["selection"] = verdict.selection
            if verdict.keep:
                kept.append(record)
            elif by := next((o.name for o in overrulers if o.overrules(record, name)), None):
                note = {"filter": name, "reason": verdict.reason or "", "score": verdict.score}
                record.setdefault("overruled", []).append({**note, "by": by})
                kept.append(record)
            else:
                ctx.reject(record, filter=name, reason=verdict.reason or "", score=verdict.score)
        stats.seen += len(batch)
        stats.kept += len(kept)
        stats.rejected += len(batch) - len(kept)
        return kept


async def _batched(records: Iterable[Record], size: int) -> AsyncIterator[list[Record]]:
    iterator = iter(records)
    while batch := list(islice(iterator, size)):
        yield batch


async def _rebatched(
    batches: AsyncIterator[list[Record]], size: int
) -> AsyncIterator[list[Record]]:
    """Batches of ``size`` again after an earlier filter thinned them out (order kept)."""
    pending: list[Record] = []
    async for batch in batches:
        if not pending and len(batch) == size:
            yield batch
            continue
        pending.extend(batch)
        while len(pending) >= size:
            yield pending[:size]
            del pending[:size]
    if pending:
        yield pending
