"""The Ray driver's hand-out loop: batches of calls to teacher actors, inside one budget.

The driver holds the run's only budget guard; the actors' teachers have none.
Before a batch of calls goes to an actor, each call's worst case is reserved
on the driver; the batch is cut at the first call that would cross the limit,
and nothing more is handed out. Each actor holds at most two batches (its
event loop answers both within its teacher's limits, so it never idles on
the round trip to the driver). When an answered batch comes back, each
completion's real cost (priced on the driver from the usage it carries)
settles its reservation before the completion is committed, and the actor
gets the next batch. After a budget stop the batches still out are waited
for — they are paid for, and committed — and then the stop is raised.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from distillpipe.errors import BudgetExceededError
from distillpipe.executors.ray_worker import call_to_row, completion_from_json, error_from_row
from distillpipe.teachers.base import Budget, Call, Completion

BATCHES_PER_ACTOR = 2


def hand_out(
    ray: Any,
    actors: Sequence[Any],
    calls: Iterable[Call],
    *,
    batch_size: int,
    budget: Budget | None,
    commit: Callable[[str, Completion], None],
) -> None:
    """Answer ``calls`` on the ``actors`` (TeacherWorker handles); ``commit(key, completion)``
    on the driver as each answer arrives. Raises the budget stop once the rest is in."""
    waiting = deque(calls)
    out: dict[Any, tuple[Any, dict[str, float]]] = {}  # batch ref -> (actor, reservations)
    refusal: BudgetExceededError | None = None

    def give(actor: Any) -> None:
        nonlocal refusal
        batch: list[Call] = []
        reserved: dict[str, float] = {}
        while waiting and refusal is None and len(batch) < batch_size:
            if budget is not None:
                try:
                    reserved[waiting[0].key] = budget.reserve(waiting[0])
                except BudgetExceededError as exc:
                    refusal = exc
                    break
            batch.append(waiting.popleft())
        if batch:
            out[actor.answer.remote([call_to_row(call) for call in batch])] = (actor, reserved)

    answering: dict[str, float] = {}
    try:
        for _ in range(BATCHES_PER_ACTOR):
            for actor in actors:
                give(actor)
        while out:
            [ready], _ = ray.wait(list(out), num_returns=1)
            actor, answering = out.pop(ready)
            for key, value, error in ray.get(ready):
                if error:
                    raise error_from_row(error)
                completion = completion_from_json(value)
                if budget is not None:
                    budget.settle(answering.pop(key, 0.0), completion)
                commit(key, completion)
            _release(budget, answering)
            give(actor)
        if refusal is not None:
            raise refusal
    finally:
        _release(budget, answering)
        for _, reserved in out.values():
            _release(budget, reserved)


def _release(budget: Budget | None, reserved: dict[str, float]) -> None:
    """Give back the reservations of calls that were never answered."""
    if budget is not None:
        for amount in reserved.values():
            budget.settle(amount, None)
    reserved.clear()
