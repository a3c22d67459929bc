"""``generate`` with a panel of teachers (``teachers:``): every member a record is routed
to (``teachers/panel.py``) is asked for its own samples, all members at once, each
through its own dispatcher (its own limits, budget and batch journal).

A record's ``responses`` hold the members' samples one member after the other, in
panel order; each carries ``teacher: NAME`` and that member's provenance. Its
requests name the member (``Request.teacher``), which enters every cache key: a
member added to a finished run is the only one asked; the others replay.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

from distillpipe.config import Config
from distillpipe.ladder import TruncationLadder
from distillpipe.provenance import Provenance
from distillpipe.stages.base import Record, StageContext
from distillpipe.teachers.base import Completion, Request, TeacherOptions
from distillpipe.teachers.members import PanelMember
from distillpipe.teachers.panel import Panel

Resolver = Callable[[Sequence[Request]], Any]


class PanelRequests:
    """Each routed member's request for a record: generate's request, sent with the
    member's ``n``, sampling overrides and name."""

    def __init__(self, panel: Panel, builders: dict[str, Callable[[Record], Request]]) -> None:
        self.panel, self.builders = panel, builders

    def for_member(self, member: PanelMember, record: Record) -> Request:
        request = self.builders[member.name](record)
        return replace(
            request,
            n=member.n or request.n,
            params=member.sampling.apply(request.params),
            teacher=self.panel.request_name(member),
        )

    def __call__(self, record: Record) -> list[Request]:
        return [self.for_member(member, record) for member in self.panel.route(record["id"])]


def request_mode(options: TeacherOptions) -> str:
    """How a member's teacher is asked: batch mode sends chat requests."""
    return "chat" if options.mode == "batch" else options.mode


def panel_requests(
    config: Config, builder: Callable[..., Any], member: str | None = None
) -> PanelRequests:
    """The panel's request maker (only ``member``'s requests when named);
    ``builder(config, mode)`` is generate's RequestBuilder."""
    panel = Panel.from_config(config)
    if member is not None:
        panel = Panel([panel.member(member)], panel.seed, named=panel.named)
    builders = {m.name: builder(config, request_mode(m.teacher)) for m in panel.answering}
    return PanelRequests(panel, builders)


async def generate_with_panel(
    records: Iterator[Record],
    ctx: StageContext,
    builder: Callable[..., Any],
    keep_finished: Callable[[Record, list[Completion], StageContext], bool],
) -> AsyncIterator[Record]:
    dispatchers = {member.name: ctx.dispatcher(member.name) for member in ctx.panel.answering}
    to_requests = panel_requests(ctx.config, builder)
    provenance = {
        name: Provenance(dispatcher, to_requests.builders[name].template_hash)
        for name, dispatcher in dispatchers.items()
    }
    rungs = ctx.config.generate.ladder
    ladders = {name: TruncationLadder(d, rungs) for name, d in dispatchers.items()} if rungs else {}
    resolvers: dict[str, Resolver] = {
        name: ladders[name].resolve if ladders else dispatcher.resolve
        for name, dispatcher in dispatchers.items()
    }
    failures: Counter[str] = ctx.stats.setdefault("teacher_failures", Counter())

    async def resolve(requests: Sequence[Request]) -> list[list[Completion]]:
        groups: dict[str, list[int]] = {}
        for index, request in enumerate(requests):
            groups.setdefault(_member_of(request, ctx), []).append(index)

        async def ask(name: str, indexes: list[int]) -> list[list[Completion]]:
            try:
                return await resolvers[name]([requests[i] for i in indexes])
            except Exception:
                failures[name] += 1
                raise

        answers = await asyncio.gather(*(ask(name, ix) for name, ix in groups.items()))
        found: list[list[Completion]] = [[] for _ in requests]
        for indexes, answered in zip(groups.values(), answers, strict=True):
            for index, completions in zip(indexes, answered, strict=True):
                found[index] = completions
        return found

    batch_size = ctx.config.generate.batch_size
    slots = sum(d.teacher.concurrency for d in dispatchers.values())
    first = next(iter(dispatchers.values()))
    try:
        async for record, answered in first.map_ordered(
            records,
            to_requests,
            batch_size=batch_size,
            batches_in_flight=max(2, -(-2 * slots // batch_size)),
            resolve=resolve,
        ):
            responses, completions = [], []
            for request, group in zip(to_requests(record), answered, strict=True):
                name = _member_of(request, ctx)
                for response in provenance[name].responses(request, group):
                    responses.append({**response, "teacher": name})
                completions += group
            record["responses"] = responses
            if not ladders or keep_finished(record, completions, ctx):
                yield record
    finally:
        if ladders:
            ctx.stats["ladder"] = {name: ladder.stats.as_dict() for name, ladder in ladders.items()}


def _member_of(request: Request, ctx: StageContext) -> str:
    return request.teacher or ctx.panel.member().name
