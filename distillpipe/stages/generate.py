"""The ``generate`` stage: n teacher samples per record, through the cache.

Each record becomes one request — chat messages (optional system prompt,
then the instruction and input rendered by ``prompts/generate/NAME.chat.jinja``)
or, for base models, a raw prompt from ``NAME.completion.jinja``. Responses
land in ``record["responses"]`` in sample order; output order is input order.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator
from typing import ClassVar

from distillpipe import prompts
from distillpipe.config import Config
from distillpipe.stages.base import Record, StageContext
from distillpipe.teachers.base import Request

SYSTEM_PRESETS = ("none", "plain", "cot", "orca")


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
    options = prompts.paragraphs(f"system/{choice}.txt")
    draw = hashlib.sha256(f"{config.seed}:{record['id']}".encode()).digest()
    return options[int.from_bytes(draw[:4], "big") % len(options)]


def build_request(record: Record, config: Config, mode: str) -> Request:
    section = config.generate
    system = system_prompt_for(record, config)
    values = {"instruction": record["instruction"], "input": record.get("input", "")}
    if mode == "chat":
        user = prompts.render(f"generate/{section.template}.chat.jinja", **values).strip()
        messages = ({"role": "system", "content": system},) if system else ()
        messages += ({"role": "user", "content": user},)
        return Request(
            id=record["id"], params=section.sampling_params(), messages=messages, n=section.n
        )
    prompt = prompts.render(
        f"generate/{section.template}.completion.jinja", system=system or "", **values
    )
    stop = prompts.lines(f"generate/{section.template}.stop.txt")
    return Request(
        id=record["id"], params=section.sampling_params(stop), prompt=prompt, n=section.n
    )


class GenerateStage:
    name: ClassVar[str] = "generate"
    section: ClassVar[str] = "generate"
    config_sections: ClassVar[tuple[str, ...]] = ("seed", "teacher", "generate")

    async def run(self, records: Iterator[Record], ctx: StageContext) -> AsyncIterator[Record]:
        dispatcher = ctx.dispatcher()
        mode = dispatcher.teacher.mode
        config = ctx.config

        def to_requests(record: Record) -> list[Request]:
            return [build_request(record, config, mode)]

        async for record, (completions,) in dispatcher.map_ordered(
            records, to_requests, batch_size=config.generate.batch_size
        ):
            record["responses"] = [
                completion.to_response(sample) for sample, completion in enumerate(completions)
            ]
            yield record
