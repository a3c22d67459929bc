"""Rejection sampling for ``generate.until``: sample a record round by round until
``k`` of its samples pass a filter of the config, or ``max_samples`` were drawn.

A round draws ``step`` more samples of every record of a batch still open (sample
indexes ``drawn .. drawn+step-1``, each through the cache under its own index, so
a killed run resumes where it stopped and a rerun asks nothing), then the filter
judges only the new samples (``Filter.passing``). Every sample drawn stays in
``responses``; ``record["sampling"]`` says which passed. A record the filter
cannot judge (no reference) stops after its first round and goes on unjudged, for
the filter stage to decide; one that never reaches ``k`` goes to the rejected
file with how many were tried.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from distillpipe.config import Config, UntilConfig, until_filter
from distillpipe.dispatch import Dispatcher
from distillpipe.filters.base import Filter, build_filter
from distillpipe.ladder import TruncationLadder
from distillpipe.pass_at_k import mean_pass_at_k
from distillpipe.provenance import Provenance
from distillpipe.teachers.base import Request

Record = dict[str, Any]
Reject = Callable[[Record, str], None]  # (record, reason)


@dataclass
class RejectionStats:
    """What ``generate.until`` spent and found, for the run's manifest."""

    until: UntilConfig
    tries: list[tuple[int, int]] = field(default_factory=list)  # (drawn, passed) per judged record
    kept: int = 0
    rejected: int = 0
    unjudged: int = 0
    samples: int = 0

    def add(self, drawn: int, passed: int | None, kept: bool) -> None:
        self.samples += drawn
        if passed is None:
            self.unjudged += 1
        else:
            self.tries.append((drawn, passed))
        self.kept += kept and passed is not None
        self.rejected += not kept

    def as_dict(self) -> dict[str, Any]:
        estimates = {
            f"pass@{k}": _rounded(mean_pass_at_k(self.tries, k))
            for k in sorted({1, self.until.k, self.until.max_samples})
        }
        kept = self.kept + self.unjudged
        return {
            "filter": self.until.filter,
            "k": self.until.k,
            "max_samples": self.until.max_samples,
            "step": self.until.step,
            "kept": self.kept,
            "rejected": self.rejected,
            "unjudged": self.unjudged,
            "samples": self.samples,
            "samples_per_kept": round(self.samples / kept, 4) if kept else None,
            **estimates,
        }


class RejectionSampler:
    """Draws samples for a batch of records in rounds; the filter is built once."""

    def __init__(
        self, config: Config, dispatcher: Dispatcher, provenance: Provenance | None = None
    ) -> None:
        assert config.generate.until is not None
        self.until = config.generate.until
        self.dispatcher = dispatcher
        self.provenance = provenance or Provenance(dispatcher, None)
        rungs = config.generate.ladder
        # with a ladder, a sample cut off at the top stays for the filter to judge
        self.resolve = TruncationLadder(dispatcher, rungs).resolve if rungs else dispatcher.resolve
        self.judge: Filter = build_filter(until_filter(config), config)
        if self.judge.uses_teacher:
            self.judge.attach_dispatcher(dispatcher)
        self.stats = RejectionStats(self.until)

    def first_round(self, request: Request) -> Request:
        return replace(request, n=min(self.until.step, self.until.max_samples), first_sample=0)

    async def sample(
        self,
        records: Iterable[Record],
        build_request: Callable[[Record], Request],
        reject: Reject,
        batch_size: int,
    ) -> AsyncIterator[Record]:
        """The records that reached ``k`` passing samples (or could not be judged), in
        input order; the others go to ``reject``."""
        batch: list[Record] = []
        for record in records:
            batch.append(record)
            if len(batch) == batch_size:
                for kept in await self._batch(batch, build_request, reject):
                    yield kept
                batch = []
        if batch:
            for kept in await self._batch(batch, build_request, reject):
                yield kept

    async def _batch(
        self, batch: list[Record], build_request: Callable[[Record], Request], reject: Reject
    ) -> list[Record]:
        until = self.until
        requests = {id(record): build_request(record) for record in batch}
        passed: dict[int, list[bool] | None] = {id(record): [] for record in batch}
        for record in batch:
            record["responses"] = []
        open_records = list(batch)
        while open_records:
            rounds = []
            for record in open_records:
                drawn = len(record["responses"])
                step = min(until.step, until.max_samples - drawn)
                rounds.append(replace(requests[id(record)], n=step, first_sample=drawn))
            completions = await self.resolve(rounds)
            views = []
            for record, request, samples in zip(open_records, rounds, completions, strict=True):
                new = self.provenance.responses(request, samples)
                record["responses"].extend(new)
                views.append({**record, "responses": new})
            scores = await self.judge.ascore(views)
            for record, score in zip(open_records, scores, strict=True):
                verdicts = self.judge.passing(score)
                so_far = passed[id(record)]
                passed[id(record)] = None if verdicts is None else [*(so_far or []), *verdicts]
            open_records = [r for r in open_records if self._still_open(r, passed[id(r)])]
        return [record for record in batch if self._settle(record, passed[id(record)], reject)]

    def _still_open(self, record: Record, passed: list[bool] | None) -> bool:
        if passed is None:
            return False
        return sum(passed) < self.until.k and len(record["responses"]) < self.until.max_samples

    def _settle(self, record: Record, passed: list[bool] | None, reject: Reject) -> bool:
        """Note the record's sampling on it; True to keep it, else it is rejected."""
        drawn = len(record["responses"])
        name = self.until.filter
        record["sampling"] = {
            "filter": name,
            "drawn": drawn,
            "passed": None if passed is None else [i for i, ok in enumerate(passed) if ok],
        }
        count = None if passed is None else sum(passed)
        keep = count is None or count >= self.until.k
        self.stats.add(drawn, count, keep)
        if not keep:
            if count == 0:
                reason = f"no sample of {drawn} passed {name}"
            else:
                reason = f"{count} of {drawn} samples passed {name}, short of k={self.until.k}"
            reject(record, reason)
        return keep

    def close(self) -> None:
        self.judge.close()


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
