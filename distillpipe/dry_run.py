"""Replaying a stage against the cache alone: a teacher that sends nothing.

:class:`OfflineTeacher` stands in front of the configured teacher: every other
attribute (model, mode, concurrency, the identity cache keys are made of) is
the real teacher's, so the real :class:`~distillpipe.dispatch.Dispatcher`
keys each call exactly as a run would, and only the calls the cache cannot
answer reach it. It sends none of them: it notes each as a call to send (its
prompt tokens, its ``max_tokens`` as the worst-case output) and answers with a
stand-in, so the stage goes on as it would.

:class:`PlannedCache` is the cache as a run would see it: what the response
cache holds, plus what the run would have sent by then (a later identical call
is a cache hit in a run). It writes nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from distillpipe.cache import ResponseCache
from distillpipe.dispatch import Dispatcher
from distillpipe.teachers.base import Call, Completion, Request, Teacher

STAND_IN_MODEL = "distillpipe-estimate-stand-in"
# One token per word in the tiktoken encodings: a stand-in is about max_tokens long.
_FILLER_WORD = "lorem"

StandIn = Callable[[str, int], Completion]
"""A stand-in completion for the call with this key and ``max_tokens``."""


def empty_stand_in(key: str, max_tokens: int) -> Completion:
    """An answer with nothing in it (a Self-Instruct round that keeps no task)."""
    return Completion("", STAND_IN_MODEL, "stop", 0, max_tokens)


def long_stand_in(key: str, max_tokens: int) -> Completion:
    """An answer as long as it may be, unique to its call, that passes every check
    (not empty, not truncated, no "sorry", no "equal"): whatever depends on it,
    a rewrite that survives, a response a judge reads, is at its largest."""
    words = [f"stand-in-{key.rpartition(':')[2][:16]}"]
    words += [_FILLER_WORD] * max(max_tokens - 8, 0)
    return Completion(" ".join(words), STAND_IN_MODEL, "stop", 0, max_tokens)


@dataclass
class Tally:
    """What one stage's replay found: the calls to send and whether answers it
    made up went on to shape later calls of the stage."""

    to_send: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0  # at most: max_tokens per call
    resolved_after_stand_in: bool = False


class OfflineTeacher:
    """The real teacher's face, sending nothing (see the module docstring)."""

    def __init__(
        self,
        teacher: Teacher,
        tally: Tally,
        stand_in: StandIn,
        count_prompt: Callable[[Request], int],
    ) -> None:
        self._teacher = teacher
        self.tally, self.stand_in, self.count_prompt = tally, stand_in, count_prompt

    def __getattr__(self, name: str) -> Any:
        return getattr(self._teacher, name)

    async def generate(self, calls: Sequence[Call]) -> AsyncIterator[tuple[Call, Completion]]:
        counted: dict[int, int] = {}  # the samples of one request share its prompt
        for call in calls:
            request = call.request
            if id(request) not in counted:
                counted[id(request)] = self.count_prompt(request)
            self.tally.to_send += 1
            self.tally.prompt_tokens += counted[id(request)]
            self.tally.output_tokens += request.params.max_tokens
            yield call, self.stand_in(call.key, request.params.max_tokens)

    async def aclose(self) -> None:
        """The real teacher is closed by whoever built it."""


@dataclass
class ReplayDispatcher(Dispatcher):
    """The dispatcher a run uses, noting when a stage resolves more requests after a
    stand-in was given: from then on the stage may ask what a run would not."""

    tally: Tally = field(default_factory=Tally)

    async def resolve(self, requests: Sequence[Request]) -> list[list[Completion]]:
        if self.tally.to_send:
            self.tally.resolved_after_stand_in = True
        return await super().resolve(requests)


class PlannedCache:
    """The response cache (None: not there yet) plus the calls planned so far; it
    writes nothing to the cache.

    ``planned`` is shared by the stages of one plan. A planned call is kept as its
    stand-in maker and ``max_tokens`` alone (a plan may hold millions), and its
    stand-in made again when a later identical call looks it up — unless
    ``replay_planned`` is off: where requests are built from earlier answers, a
    request repeated after a stand-in may be the stand-in's doing (a Self-Instruct
    round that kept no task asks what the last one asked), so it counts again.
    """

    def __init__(
        self,
        cache: ResponseCache | None,
        stand_in: StandIn,
        planned: dict[str, tuple[StandIn, int]],
        *,
        replay_planned: bool = True,
    ) -> None:
        self.cache, self.stand_in, self.planned = cache, stand_in, planned
        self.replay_planned = replay_planned
        self.cached_hits = 0  # answered by the response cache (planned ones not counted)

    def get_many(self, keys: Iterable[str]) -> dict[str, Completion]:
        wanted = list(keys)
        found = {}
        if self.replay_planned:
            for key in wanted:
                if (planned := self.planned.get(key)) is not None:
                    make, max_tokens = planned
                    found[key] = make(key, max_tokens)
        unfound = (key for key in wanted if key not in found)
        held = self.cache.get_many(unfound) if self.cache is not None else {}
        self.cached_hits += len(held)
        return {**found, **held}

    def put(self, key: str, completion: Completion) -> None:
        self.planned[key] = (self.stand_in, completion.completion_tokens)
