"""The ``filter`` stage: the configured filters, in order, over a stream of records.

Each filter scores a batch (``Filter.ascore``: pure, the part that scales
out), then decides record by record on the driver, in input order. A kept
record gets ``scores.<name>`` (and ``selection`` when the filter picks among
samples); a rejected one goes to the rejected file through ``ctx.reject``
with the same score, never dropped. Filters that need every score first
(percentile thresholds) hold their records until the input ends; the others
stream, so memory stays flat.

Per-filter stats land in ``ctx.stats["filters"][name]``:
``{seen, kept, rejected, quantiles}``.
"""

from __future__ import annotations

import math
import random
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from typing import Any, ClassVar

from distillpipe.filters.base import Filter, Verdict, build_filter, percentile
from distillpipe.stages.base import Record, StageContext

QUANTILES = (0, 10, 25, 50, 75, 90, 100)
RESERVOIR = 10_000


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

    def add_value(self, value: float | None) -> None:
        if value is None:
            return
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
    section: ClassVar[str] = "filter"
    config_sections: ClassVar[tuple[str, ...]] = ("seed", "teacher", "filter")

    async def score_batch(self, filter: Filter, batch: Sequence[Record]) -> list[Any]:
        """Where scoring runs: in process here; a distributed executor overrides this."""
        return await filter.ascore(batch)

    async def run(self, records: Iterator[Record], ctx: StageContext) -> AsyncIterator[Record]:
        filters = [build_filter(options, ctx.config) for options in ctx.config.filter or []]
        for filter in filters:
            if filter.uses_teacher:
                filter.attach_dispatcher(ctx.dispatcher())
        stats = {f.name: FilterStats(f.name, ctx.config.seed) for f in filters}
        stream: AsyncIterator[Record] = _aiter(records)
        for filter in filters:
            stream = self._apply(filter, stream, ctx, stats[filter.name])
        try:
            async for record in stream:
                yield record
        finally:
            ctx.stats["filters"] = {name: s.as_dict() for name, s in stats.items()}
            for filter in filters:
                filter.close()

    async def _apply(
        self, filter: Filter, records: AsyncIterator[Record], ctx: StageContext, stats: FilterStats
    ) -> AsyncIterator[Record]:
        size = filter.options.batch_size
        if not filter.needs_all_scores:
            async for batch in _abatched(records, size):
                scores = await self.score_batch(filter, batch)
                for record, score in zip(batch, scores, strict=True):
                    stats.add_value(filter.value(score))
                    if self._decide(filter, record, score, ctx, stats):
                        yield record
            return
        held: list[tuple[Record, Any]] = []
        async for batch in _abatched(records, size):
            scores = await self.score_batch(filter, batch)
            held.extend(zip(batch, scores, strict=True))
        values = [filter.value(score) for _, score in held]
        for value in values:
            stats.add_value(value)
        filter.fit(values)
        for record, score in held:
            if self._decide(filter, record, score, ctx, stats):
                yield record

    @staticmethod
    def _decide(
        filter: Filter, record: Record, score: Any, ctx: StageContext, stats: FilterStats
    ) -> bool:
        stats.seen += 1
        verdict: Verdict = filter.decide(record, score)
        if verdict.score is not None:
            record.setdefault("scores", {})[filter.name] = verdict.score
        if verdict.selection is not None:
            record["selection"] = verdict.selection
        if verdict.keep:
            stats.kept += 1
            return True
        stats.rejected += 1
        ctx.reject(record, filter=filter.name, reason=verdict.reason or "", score=verdict.score)
        return False


async def _aiter(records: Iterable[Record]) -> AsyncIterator[Record]:
    for record in records:
        yield record


async def _abatched(records: AsyncIterator[Record], size: int) -> AsyncIterator[list[Record]]:
    batch: list[Record] = []
    async for record in records:
        batch.append(record)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
