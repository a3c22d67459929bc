"""Resolve teacher requests through the response cache, the teacher second.

Every stage that talks to a teacher goes through a :class:`Dispatcher`:

- each request becomes one :class:`Call` per sample whose cache key is the
  hash of (the teacher's identity, messages or prompt, sampling parameters,
  config seed, sample index), and whose sampling seed is drawn from that key —
  so a rerun issues byte-identical requests, and another model (another GGUF
  file, another model behind the same endpoint) never answers from the cache;
- calls the cache answers are replayed; the rest go to the teacher, and each
  completion is committed to the cache the moment it arrives;
- :meth:`Dispatcher.map_ordered` streams items through with a bounded
  window and yields them in input order, so outputs are deterministic.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from distillpipe.cache import KEY_VERSION, ResponseCache
from distillpipe.records import content_hash
from distillpipe.teachers.base import Call, Completion, Request, Teacher

T = TypeVar("T")


@dataclass(slots=True)
class DispatchStats:
    requests: int = 0
    calls: int = 0
    cache_hits: int = 0
    teacher_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    teacher_seconds: float = 0.0
    cost_usd: float = 0.0

    def __add__(self, other: DispatchStats) -> DispatchStats:
        merged = (getattr(self, f.name) + getattr(other, f.name) for f in fields(self))
        return DispatchStats(*merged)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def call_key(identity: Mapping[str, Any], request: Request, config_seed: int, sample: int) -> str:
    """``v2:sha256:<hex>``; ``identity`` is the teacher's (``Teacher.identity``)."""
    payload = {
        "teacher": identity,
        **request.payload(),
        "params": request.params.as_dict(),
        "seed": config_seed,
        "sample": sample,
    }
    return f"{KEY_VERSION}:{content_hash(payload)}"


def seed_from_key(key: str) -> int:
    """A 31-bit sampling seed drawn from the call's key (its hex digest)."""
    return int(key.rpartition(":")[2][:8], 16) & 0x7FFFFFFF


@dataclass
class Dispatcher:
    teacher: Teacher
    cache: ResponseCache | None
    config_seed: int = 0
    stats: DispatchStats = field(default_factory=DispatchStats)
    on_call_done: Callable[[Completion, bool], None] | None = None
    price: Callable[[Completion], float] | None = None

    def calls_for(self, request: Request) -> list[Call]:
        calls = []
        for sample in range(request.n):
            key = call_key(self.teacher.identity, request, self.config_seed, sample)
            calls.append(Call(request, sample, key, seed_from_key(key)))
        return calls

    async def resolve(self, requests: Sequence[Request]) -> list[list[Completion]]:
        """Completions for each request, one per sample, aligned with ``requests``."""
        per_request = [self.calls_for(request) for request in requests]
        calls = [call for group in per_request for call in group]
        self.stats.requests += len(requests)
        self.stats.calls += len(calls)
        found = self.cache.get_many(call.key for call in calls) if self.cache else {}
        self.stats.cache_hits += len(found)
        for completion in found.values():
            self._count(completion, cached=True)
        missing = [call for call in calls if call.key not in found]
        if missing:
            started = time.perf_counter()
            async for call, completion in self.teacher.generate(missing):
                if self.cache is not None:
                    self.cache.put(call.key, completion)
                found[call.key] = completion
                self.stats.teacher_calls += 1
                self._count(completion, cached=False)
            self.stats.teacher_seconds += time.perf_counter() - started
        return [[found[call.key] for call in group] for group in per_request]

    async def map_ordered(
        self,
        items: Iterable[T],
        to_requests: Callable[[T], list[Request]],
        *,
        batch_size: int,
        batches_in_flight: int | None = None,
    ) -> AsyncIterator[tuple[T, list[list[Completion]]]]:
        """Yield ``(item, completions per request)`` in input order.

        Items are taken in batches; up to ``batches_in_flight`` batches are
        resolved at once (default: enough for twice the teacher's concurrency)
        so the teacher never idles while a batch's slowest call finishes.
        Memory is bounded by the window, not the input.
        """
        if batches_in_flight is None:  # enough batches to keep every teacher slot busy, twice
            batches_in_flight = max(2, -(-2 * self.teacher.concurrency // batch_size))
        pending: asyncio.Queue[asyncio.Task[Any] | None] = asyncio.Queue(batches_in_flight)

        async def produce() -> None:
            try:
                for batch in _batched(items, batch_size):
                    requests = [to_requests(item) for item in batch]
                    flat = [request for group in requests for request in group]
                    task = asyncio.ensure_future(self.resolve(flat))
                    grouped = _with_batch(task, batch, requests)
                    try:
                        await pending.put(grouped)
                    except asyncio.CancelledError:
                        grouped.cancel()
                        grouped.add_done_callback(_retrieve)
                        raise
            finally:
                await pending.put(None)

        producer = asyncio.ensure_future(produce())
        try:
            while (task := await pending.get()) is not None:
                for item, completions in await task:
                    yield item, completions
            await producer
        finally:
            producer.cancel()
            while not pending.empty():
                leftover = pending.get_nowait()
                if leftover is not None:
                    leftover.cancel()
                    leftover.add_done_callback(_retrieve)  # its error was superseded

    def _count(self, completion: Completion, *, cached: bool) -> None:
        self.stats.prompt_tokens += completion.prompt_tokens
        self.stats.completion_tokens += completion.completion_tokens
        if not cached and self.price is not None:
            self.stats.cost_usd += self.price(completion)
        if self.on_call_done is not None:
            self.on_call_done(completion, cached)


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


def _with_batch(
    task: asyncio.Future[list[list[Completion]]], batch: list[T], requests: list[list[Request]]
) -> asyncio.Task[list[tuple[T, list[list[Completion]]]]]:
    async def regroup() -> list[tuple[T, list[list[Completion]]]]:
        flat = await task
        grouped, start = [], 0
        for item, group in zip(batch, requests, strict=True):
            grouped.append((item, flat[start : start + len(group)]))
            start += len(group)
        return grouped

    return asyncio.ensure_future(regroup())


def _batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
