"""Resolve teacher requests through the response cache, the teacher second.

Every stage that talks to a teacher goes through a :class:`Dispatcher`:

- each request becomes one :class:`Call` per sample whose cache key is the
  hash of (the teacher's identity, messages or prompt, sampling parameters,
  config seed, sample index), and whose sampling seed is drawn from that key —
  so a rerun issues byte-identical requests, and another model (another GGUF
  file, another model behind the same endpoint) never answers from the cache.
  The sampling parameters are those the teacher sends: one its model is never
  sent (a reasoning model's temperature) is left out, an option that changes
  the answer (``reasoning_effort``, a thinking budget) is in, and so are a
  response format and how the backend enforces it (``format_params``);
- calls the cache answers are replayed; the rest go to the teacher, and each
  completion is committed to the cache the moment it arrives;
- identical calls (two records with the same instruction share an id, so
  their calls share keys) go to the teacher once: within a batch, and across
  the batches in flight at once, a repeat waits for the first one's
  completion; once that is cached, a later repeat is a cache hit;
- :meth:`Dispatcher.map_ordered` streams items through with a bounded
  window and yields them in input order, so outputs are deterministic.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
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
    duplicate_calls: int = 0  # answered by an identical call in flight: neither cache nor teacher
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    teacher_seconds: float = 0.0
    cost_usd: float = 0.0

    def __add__(self, other: DispatchStats) -> DispatchStats:
        merged = (getattr(self, f.name) + getattr(other, f.name) for f in fields(self))
        return DispatchStats(*merged)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def call_key(
    identity: Mapping[str, Any],
    request: Request,
    config_seed: int,
    sample: int,
    params: dict[str, Any] | None = None,
) -> str:
    """``v2:sha256:<hex>``; ``identity`` is the teacher's (``Teacher.identity``), ``params``
    the sampling parameters as it sends them (``TeacherOptions.request_params``; the
    request's own when not given)."""
    payload = {
        "teacher": identity,
        **request.payload(),
        "params": request.params.as_dict() if params is None else params,
        "seed": config_seed,
        "sample": sample,
    }
    if request.teacher is not None:  # a panel member's own samples, even of the same model
        payload["member"] = request.teacher
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
    # key -> the completion promised by the resolve that sent it, while it is in flight
    _in_flight: dict[str, asyncio.Future[Completion]] = field(
        default_factory=dict, init=False, repr=False
    )

    def calls_for(self, request: Request) -> list[Call]:
        calls = []
        params = self.teacher.options.request_params(request.params)
        if request.response_format is not None:  # how it is enforced changes the answer
            params = {**params, **self.teacher.options.format_params()}
        for sample in range(request.first_sample, request.first_sample + request.n):
            key = call_key(self.teacher.identity, request, self.config_seed, sample, params)
            calls.append(Call(request, sample, key, seed_from_key(key)))
        return calls

    async def resolve(self, requests: Sequence[Request]) -> list[list[Completion]]:
        """Completions for each request, one per sample, aligned with ``requests``."""
        per_request = [self.calls_for(request) for request in requests]
        calls = [call for group in per_request for call in group]
        self.stats.requests += len(requests)
        self.stats.calls += len(calls)
        distinct: dict[str, Call] = {}
        for call in calls:
            distinct.setdefault(call.key, call)
        self.stats.duplicate_calls += len(calls) - len(distinct)
        found = await self._answer(list(distinct.values()))
        return [[found[call.key] for call in group] for group in per_request]

    async def _answer(self, calls: list[Call]) -> dict[str, Completion]:
        """One completion per call (keys distinct): from an identical call already in
        flight, from the cache, or from the teacher, in that order."""
        awaited = [call for call in calls if call.key in self._in_flight]
        elsewhere = {call.key: self._in_flight[call.key] for call in awaited}
        lookup = [call for call in calls if call.key not in elsewhere]
        cached = self.cache.get_many(call.key for call in lookup) if self.cache else {}
        found = {key: self._read(completion) for key, completion in cached.items()}
        self.stats.cache_hits += len(found)
        for completion in found.values():
            self._count(completion, cached=True)
        missing = [call for call in lookup if call.key not in found]
        if missing:
            await self._ask_teacher(missing, found)
        orphaned = []
        for call in awaited:
            promise = elsewhere[call.key]
            try:
                # shielded: this caller being cancelled must not cancel the others' promise
                found[call.key] = await asyncio.shield(promise)
            except asyncio.CancelledError:
                if not promise.cancelled() or _being_cancelled():
                    raise
                orphaned.append(call)  # its sender was cancelled, this caller was not
                continue
            self.stats.duplicate_calls += 1
        if orphaned:
            found.update(await self._answer(orphaned))
        return found

    async def _ask_teacher(self, calls: list[Call], found: dict[str, Completion]) -> None:
        """Send ``calls``, promising each completion to identical calls that come meanwhile."""
        loop = asyncio.get_running_loop()
        promised = {call.key: loop.create_future() for call in calls}
        self._in_flight.update(promised)
        started = time.perf_counter()
        try:
            async for call, answered in self.teacher.generate(calls):
                if answered.created is None:  # cached with it, so a replay says the same
                    answered = replace(answered, created=utc_now())
                if self.cache is not None:
                    self.cache.put(call.key, answered)
                completion = self._read(answered)
                found[call.key] = completion
                self.stats.teacher_calls += 1
                self._count(completion, cached=False)
                if not promised[call.key].done():
                    promised[call.key].set_result(completion)
        except Exception as exc:  # those waiting on a call fail as its sender does
            for promise in promised.values():
                if not promise.done():
                    promise.set_exception(exc)
                    promise.add_done_callback(_retrieve)  # no one may be waiting
            raise
        finally:
            self.stats.teacher_seconds += time.perf_counter() - started
            for key, promise in promised.items():
                if self._in_flight.get(key) is promise:
                    del self._in_flight[key]
                promise.cancel()  # a no-op once answered; else its waiters send it themselves

    async def map_ordered(
        self,
        items: Iterable[T],
        to_requests: Callable[[T], list[Request]],
        *,
        batch_size: int,
        batches_in_flight: int | None = None,
        resolve: Callable[[Sequence[Request]], Awaitable[list[list[Completion]]]] | None = None,
    ) -> AsyncIterator[tuple[T, list[list[Completion]]]]:
        """Yield ``(item, completions per request)`` in input order.

        Items are taken in batches; up to ``batches_in_flight`` batches are
        resolved at once (default: enough for twice the teacher's concurrency)
        so the teacher never idles while a batch's slowest call finishes.
        Memory is bounded by the window, not the input. ``resolve`` stands in for
        :meth:`resolve` (the truncation ladder's, which resolves through it).
        """
        resolve = resolve or self.resolve
        if batches_in_flight is None:  # enough batches to keep every teacher slot busy, twice
            batches_in_flight = max(2, -(-2 * self.teacher.concurrency // batch_size))
        pending: asyncio.Queue[asyncio.Task[Any] | None] = asyncio.Queue(batches_in_flight)

        async def produce() -> None:
            try:
                for batch in _batched(items, batch_size):
                    requests = [to_requests(item) for item in batch]
                    flat = [request for group in requests for request in group]
                    task = asyncio.ensure_future(resolve(flat))
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

    def _read(self, completion: Completion) -> Completion:
        """As records carry it: the cache keeps the content as it came, an inline trace
        and all; it is split here, by the teacher's ``reasoning`` options."""
        return completion.read(self.teacher.options.reasoning)

    def _count(self, completion: Completion, *, cached: bool) -> None:
        self.stats.prompt_tokens += completion.prompt_tokens
        self.stats.completion_tokens += completion.completion_tokens
        self.stats.reasoning_tokens += completion.reasoning_tokens
        if not cached and self.price is not None:
            self.stats.cost_usd += self.price(completion)
        if self.on_call_done is not None:
            self.on_call_done(completion, cached)


def utc_now() -> str:
    """The time a teacher answered, as completions carry it."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


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
