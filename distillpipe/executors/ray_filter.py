"""The filter stage on Ray: scoring on actors, every decision on the driver.

A filter's ``score(batch)`` is pure (issue 4's contract), so the stage sends
each batch to a pool of scorer actors — one set of filter models per actor,
loaded once — split into one slice per actor. Everything global stays on
the driver, in input order, exactly as in the local stage: ``fit`` sees every
score of the run before a percentile threshold decides, and stateful decisions
(dedup keeps the first occurrence) run one record after another. The records
therefore equal the local executor's.

Filters that ask the teacher (``uses_teacher``) keep scoring in the driver:
their calls go through the driver's cached dispatcher, so they resume like
every other teacher call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from distillpipe.config import Config
from distillpipe.executors.ray_worker import with_actor_threads
from distillpipe.filters.base import Filter, FilterOptions, build_filter
from distillpipe.stages.base import Record
from distillpipe.stages.filter import FilterStage


class FilterScorer:
    """A Ray actor: builds each filter the first time it is asked, then scores batches."""

    def __init__(self, config: Config, num_cpus: float) -> None:
        self.config, self.num_cpus = config, num_cpus
        self.filters: dict[str, Filter] = {}

    def score(self, options: FilterOptions, records: list[Record]) -> list[Any]:
        name = options.filter_name
        if name not in self.filters:
            options = with_actor_threads(options, self.num_cpus)
            self.filters[name] = build_filter(options, self.config)
        return self.filters[name].score(records)


def remote_filters(config: Config) -> list[FilterOptions]:
    """The filters worth shipping to actors: those that score without the teacher."""
    chosen = []
    for options in config.filter or []:
        if not build_filter(options, config).uses_teacher:
            chosen.append(options)
    return chosen


class RayFilterStage(FilterStage):
    """The filter stage with ``score_batch`` answered by a pool of FilterScorer actors."""

    def __init__(self, scorers: Sequence[Any]) -> None:
        self.scorers = list(scorers)

    async def score_batch(self, filter: Filter, batch: Sequence[Record]) -> list[Any]:
        if filter.uses_teacher or not self.scorers:
            return await super().score_batch(filter, batch)
        slices = split_evenly(list(batch), len(self.scorers))
        refs = [
            scorer.score.remote(filter.options, part)
            for scorer, part in zip(self.scorers, slices, strict=False)
            if part
        ]
        parts = await asyncio.gather(*refs)
        return [score for part in parts for score in part]


def split_evenly(items: list[Record], parts: int) -> list[list[Record]]:
    """Contiguous slices whose sizes differ by at most one, in order."""
    size, extra = divmod(len(items), parts)
    slices, start = [], 0
    for index in range(parts):
        end = start + size + (1 if index < extra else 0)
        slices.append(items[start:end])
        start = end
    return slices
