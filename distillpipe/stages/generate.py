"""The ``generate`` stage: n teacher samples per record, through the cache.

Each record becomes one request — chat messages (optional system prompt,
then the instruction and input rendered by ``prompts/generate/NAME.chat.jinja``)
or, for base models, a raw prompt from ``NAME.completion.jinja``. Responses
land in ``record["responses"]`` in sample order; output order is input order.
With ``generate.until`` a record is sampled in rounds until enough samples pass
a filter (``rejection.py``); records that never do go to the rejected file.
With a ladder of token limits (``generate.max_tokens: [...]``, ``ladder.py``) a
sample cut off at its limit is asked again at the next; cut off at the top, it
goes to the rejected file. Every response carries its provenance
(``provenance.py``). ``generate.response_format`` (or a record's ``schema``) asks
for JSON answers (``structured.py``).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import replace
from typing import ClassVar

from distillpipe.config import Config
from distillpipe.ladder import TruncationLadder, cut_off, cut_off_reason
from distillpipe.prompts import prompts_for
from distillpipe.provenance import Provenance, template_hash
from distillpipe.rejection import RejectionSampler
from distillpipe.stages.base import Record, StageContext
from distillpipe.stages.conversation import converse
from distillpipe.stages.generate_panel import generate_with_panel, panel_requests
from distillpipe.structured import record_format
from distillpipe.teachers.base import Completion, Request

SYSTEM_PRESETS = ("none", "plain", "cot", "orca")
LADDER = "generate.max_tokens"  # the rejected file's `reject.filter` for cut-off samples


def system_prompt_for(record: Record, config: Config) -> str | None:
    """The record's own ``system`` wins; else the configured preset or literal text.

    The orca preset holds several messages; each record gets one, drawn from
    the config seed and the record id so reruns pick the same one.
    """
    if record.get("system"):
        return record["system"]
    choice = config.generate.system_prompt
    if choice == "none":
        return None
    if choice not in SYSTEM_PRESETS:
        return choice
    options = prompts_for(config).paragraphs(f"system/{choice}.txt")
    draw = hashlib.sha256(f"{config.seed}:{record['id']}".encode()).digest()
    return options[int.from_bytes(draw[:4], "big") % len(options)]


class RequestBuilder:
    """Turns records into teacher requests; everything that does not depend on
    the record (templates, sampling parameters, stop sequences) is prepared once."""

    def __init__(self, config: Config, mode: str) -> None:
        section = config.generate
        self.config, self.mode, self.n = config, mode, section.n
        prompts = prompts_for(config)
        if mode == "chat":
            name = f"generate/{section.template}.chat.jinja"
            self.params = section.sampling_params()
        else:
            name = f"generate/{section.template}.completion.jinja"
            self.params = section.sampling_params(
                prompts.lines(f"generate/{section.template}.stop.txt")
            )
        self.template = prompts.template(name)
        self.template_hash = template_hash(prompts.text(name))
        self.response_format = section.response_format_value

    def __call__(self, record: Record) -> Request:
        system = system_prompt_for(record, self.config)
        instruction, extra = record["instruction"], record.get("input", "")
        answer_format = record_format(record, self.response_format)
        if self.mode == "chat":
            user = self.template.render(instruction=instruction, input=extra).strip()
            messages = ({"role": "system", "content": system},) if system else ()
            messages += ({"role": "user", "content": user},)
            return Request(
                id=record["id"],
                params=self.params,
                messages=messages,
                n=self.n,
                response_format=answer_format,
            )
        prompt = self.template.render(instruction=instruction, input=extra, system=system or "")
        return Request(
            id=record["id"],
            params=self.params,
            prompt=prompt,
            n=self.n,
            response_format=answer_format,
        )


class GenerateStage:
    name: ClassVar[str] = "generate"
    position: ClassVar[int] = 300
    section: ClassVar[str] = "generate"
    config_sections: ClassVar[tuple[str, ...]] = ("seed", "teacher", "generate")
    prompt_folders: ClassVar[tuple[str, ...]] = ("generate", "system", "conversation")

    @staticmethod
    def expected_calls(config: Config, records: int) -> int:
        until, conversation = config.generate.until, config.generate.conversation
        if until is not None:  # the first round; later rounds depend on the filter
            return records * min(until.step, until.max_samples)
        if conversation is not None:  # every assistant turn, and every user turn but the first
            return records * (2 * conversation.turns - 1)
        if config.teachers is not None:  # each member's n, on its share of the records
            return sum(
                math.ceil(records * (1.0 if m.share is None else m.share))
                * (m.n or config.generate.n)
                for m in config.teachers
                if m.answers
            )
        return records * config.generate.n

    def teacher_requests(
        self, records: Iterable[Record], config: Config, mode: str, member: str | None = None
    ) -> Iterator[Request]:
        """The requests ``run`` sends for these records, for an executor that answers
        them elsewhere first (Ray) and lets ``run`` replay them from the cache; with a
        panel, those of the member named ``member`` (all members' when None)."""
        if config.generate.conversation is not None:
            return  # each turn depends on the one before: run asks them itself
        if config.teachers is not None and config.generate.until is None:  # a panel
            by_member = panel_requests(config, RequestBuilder, member)
            for record in records:
                yield from by_member(record)
            return
        build_request = RequestBuilder(config, mode)
        until = config.generate.until
        for record in records:
            request = build_request(record)
            # with until: the first round; the stage sends the later ones itself
            yield (
                request if until is None else replace(request, n=min(until.step, until.max_samples))
            )

    async def run(self, records: Iterator[Record], ctx: StageContext) -> AsyncIterator[Record]:
        if ctx.config.generate.conversation is not None:
            async for record in converse(records, ctx, system_prompt_for):
                yield record
            return
        if ctx.config.teachers is not None and ctx.config.generate.until is None:  # a panel
            async for record in generate_with_panel(
                records, ctx, RequestBuilder, self._keep_finished
            ):
                yield record
            return
        dispatcher = ctx.dispatcher()
        build_request = RequestBuilder(ctx.config, dispatcher.teacher.mode)
        provenance = Provenance(dispatcher, build_request.template_hash)
        if ctx.config.generate.until is not None:
            async for record in self._run_until(records, ctx, provenance, build_request):
                yield record
            return
        rungs = ctx.config.generate.ladder
        ladder = TruncationLadder(dispatcher, rungs) if rungs else None

        def to_requests(record: Record) -> list[Request]:
            return [build_request(record)]

        try:
            async for record, (completions,) in dispatcher.map_ordered(
                records,
                to_requests,
                batch_size=ctx.config.generate.batch_size,
                resolve=ladder.resolve if ladder else None,
            ):
                record["responses"] = provenance.responses(build_request(record), completions)
                if ladder is None or self._keep_finished(record, completions, ctx):
                    yield record
        finally:
            if ladder is not None:
                ctx.stats["ladder"] = ladder.stats.as_dict()

    @staticmethod
    def _keep_finished(record: Record, completions: list[Completion], ctx: StageContext) -> bool:
        """The samples the top of the ladder still cut off go to the rejected file (the
        record with those samples alone); the record goes on with the others, if any."""
        cut = [i for i, completion in enumerate(completions) if cut_off(completion)]
        if not cut:
            return True
        responses = record["responses"]
        for i in cut:
            reason = cut_off_reason(responses[i], completions[i].ladder)
            ctx.reject({**record, "responses": [responses[i]]}, filter=LADDER, reason=reason)
        record["responses"] = [r for i, r in enumerate(responses) if i not in cut]
        return bool(record["responses"])

    async def _run_until(
        self,
        records: Iterator[Record],
        ctx: StageContext,
        provenance: Provenance,
        build_request: RequestBuilder,
    ) -> AsyncIterator[Record]:
        sampler = RejectionSampler(ctx.config, provenance.dispatcher, provenance)
        name = sampler.judge.name

        def reject(record: Record, reason: str) -> None:
            ctx.reject(record, filter=name, reason=reason, score=record["sampling"])

        try:
            async for record in sampler.sample(
                records, build_request, reject, ctx.config.generate.batch_size
            ):
                ctx.stats["until"] = sampler.stats.as_dict()
                yield record
        finally:
            ctx.stats["until"] = sampler.stats.as_dict()
            sampler.close()
