"""The ``magpie`` stage: instructions an aligned model writes from nothing (Xu et al. 2024).

The teacher (a backend that takes raw prompts) is sent only its own chat
template's pre-query — the text before a user message's content, cut from the
template by ``chat_templates.py`` — and writes a user turn, which becomes an
instruction; ``generate`` then answers it as it answers any record. Every draw
is the same prompt with its own sample index, so n instructions have n cache
keys (and n sampling seeds): a rerun asks nothing, a killed run resumes.

A draw cut by ``max_tokens`` (unless ``keep_truncated``), empty, or an
exact duplicate of an instruction already kept goes to the rejected file with
its reason. Draws go on in batches until ``count`` instructions are kept or
``max_samples`` are drawn. Records read from the input pass through first (so
seeds and Magpie instructions mix); ``distillpipe run`` needs no input when the
run starts here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import ClassVar

from distillpipe.chat_templates import teacher_chat_template
from distillpipe.config import Config, MagpieConfig
from distillpipe.errors import ConfigError
from distillpipe.instructions import normalised
from distillpipe.records import new_record
from distillpipe.stages.base import Record, StageContext
from distillpipe.teachers.base import Request

REJECTS = ("empty", "truncated", "duplicate")


def _section(config: Config) -> MagpieConfig:
    return config.magpie or MagpieConfig()


def max_samples(section: MagpieConfig) -> int:
    return section.max_samples if section.max_samples is not None else 2 * section.count


class MagpieStage:
    name: ClassVar[str] = "magpie"
    position: ClassVar[int] = 150  # after seed (whose records it passes through), before evolve
    section: ClassVar[str] = "magpie"
    config_sections: ClassVar[tuple[str, ...]] = ("seed", "teacher", "magpie")
    prompt_folders: ClassVar[tuple[str, ...]] = ()  # its prompt is the model's own template
    needs_input: ClassVar[bool] = False

    @staticmethod
    def expected_records(config: Config, records: int | None) -> int | None:
        return (records or 0) + _section(config).count

    @staticmethod
    def expected_calls(config: Config, records: int) -> int:
        return _section(config).count

    async def run(self, records: Iterator[Record], ctx: StageContext) -> AsyncIterator[Record]:
        section = _section(ctx.config)
        seen: set[str] = set()
        for record in records:
            seen.add(normalised(record["instruction"]))
            yield record
        counts = dict.fromkeys(("drawn", "kept", *REJECTS), 0)
        ctx.stats["magpie"] = counts
        if section.count == 0:
            return
        dispatcher = ctx.dispatcher(section.teacher)
        if dispatcher.teacher.mode != "completion":
            raise ConfigError(
                "magpie: sends raw prompts; set teacher.mode: completion "
                "(llamacpp, vllm or a completions endpoint)"
            )
        template = teacher_chat_template(
            dispatcher.teacher.options, section.chat_template, "magpie.chat_template"
        )
        system = [{"role": "system", "content": section.system_prompt}]
        prompt = template.pre_query(system if section.system_prompt else ())
        params = section.sampling_params(template.user_turn_stops())
        limit = max_samples(section)
        model = dispatcher.teacher.model
        while counts["kept"] < section.count and counts["drawn"] < limit:
            left = min(section.count - counts["kept"], limit - counts["drawn"])
            wanted = min(section.batch_size, left)
            request = Request(
                id=f"magpie:{counts['drawn']}",
                params=params,
                prompt=prompt,
                n=wanted,
                first_sample=counts["drawn"],
            )
            (completions,) = await dispatcher.resolve([request])
            for offset, completion in enumerate(completions):
                sample = counts["drawn"] + offset
                text = completion.text.strip()
                origin = {"stage": self.name, "sample": sample, "model": model}
                reason = None
                if completion.finish_reason == "length" and not section.keep_truncated:
                    reason = ("truncated", f"cut at max_tokens ({section.max_tokens})")
                elif not text:
                    reason = ("empty", "the model wrote no user turn")
                elif normalised(text) in seen:
                    reason = ("duplicate", "the same instruction is already kept")
                if reason is not None:
                    counts[reason[0]] += 1
                    rejected = new_record(text, origin=origin)
                    ctx.reject(rejected, filter=f"magpie.{reason[0]}", reason=reason[1])
                    continue
                seen.add(normalised(text))
                counts["kept"] += 1
                yield new_record(text, system=section.system_prompt, origin=origin)
            counts["drawn"] += wanted
