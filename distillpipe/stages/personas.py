"""The ``personas`` stage: "write a question that PERSONA would ask about TOPIC"
(Persona Hub, Ge et al. 2024).

The personas come from a file (``personas.py``: one a line, or JSONL with a
``persona`` field and any others); the topics from ``personas.topics`` or,
without it, from the input records — a record from the ``topics`` stage by its
path (``Subject > Subtopic``), any other by its instruction, which the persona
then asks again in their own words. ``pairs`` persona × topic pairs are drawn,
seeded by ``personas.seed`` (default: the config seed): personas in a
shuffled order take turns, each taking its next topic from its own seeded
draw, until ``pairs`` are drawn or every persona has ``per_persona``.

Each pair is one cached request whose answer's first line is the question: a
record with ``origin.persona`` (and ``origin.parent_id`` and ``origin.path``
of the record it came from). An empty, overlong or cut-off question, or a
near duplicate (exact, ROUGE-L, MiniLM) of an input record or of a question
kept before, goes to the rejected file with its reason. Input records pass
through first unless ``keep_input: false``.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from distillpipe.config import Config, SamplingConfig, StageOptions, beside_config
from distillpipe.errors import ConfigError
from distillpipe.instructions import stop_sequences
from distillpipe.lists import ListLimits, first_item
from distillpipe.near_duplicates import NearDuplicateOptions, NearDuplicates
from distillpipe.personas import Persona, load_personas
from distillpipe.prompts import prompts_for
from distillpipe.records import new_record
from distillpipe.stages.base import Record, StageContext
from distillpipe.teachers.base import Request

REJECTS = ("empty", "truncated", "exact", "rouge_l", "cosine")


class PersonasOptions(StageOptions, SamplingConfig):
    """The ``personas:`` section."""

    temperature: float = Field(0.9, ge=0.0, le=2.0)
    max_tokens: int = Field(96, ge=1)
    file: str = Field(description="the persona list: text, one a line, or JSONL (`persona`)")
    topics: list[str] = Field(
        default_factory=list, description="what they ask about; default: the input records"
    )
    pairs: int = Field(20, ge=0, description="persona × topic pairs drawn (one question each)")
    per_persona: int | None = Field(None, ge=1, description="pairs per persona at most")
    seed: int | None = Field(None, description="the pairs' draw; default: the config seed")
    keep_input: bool = Field(True, description="write the input records before the questions")
    keep_truncated: bool = Field(False, description="keep questions cut by max_tokens")
    max_question_words: int = Field(80, ge=3)
    batch_size: int = Field(16, ge=1, description="pairs resolved per dispatch batch")
    dedup: NearDuplicateOptions = Field(default_factory=NearDuplicateOptions)

    def beside_config(self, config_path: Path) -> None:
        self.file = beside_config(self.file, config_path)

    def optional_modules(self) -> dict[str, str]:
        return self.dedup.optional_modules()


def options_of(config: Config) -> PersonasOptions:
    options = config.section("personas")
    if options is None:
        raise ConfigError("personas: the config has no `personas:` section (its `file` at least)")
    return options


@dataclass(frozen=True, slots=True)
class Subject:
    """What a persona asks about: a topic, or the record it came from."""

    topic: str
    record: Record | None = None


def subjects_from(records: list[Record], options: PersonasOptions) -> list[Subject]:
    if options.topics:
        return [Subject(topic.strip()) for topic in options.topics if topic.strip()]
    subjects = []
    for record in records:
        path = (record.get("origin") or {}).get("path")
        topic = " > ".join(map(str, path)) if path else record["instruction"]
        subjects.append(Subject(topic, record))
    return subjects


def draw_pairs(personas: int, subjects: int, options: PersonasOptions, seed: int):
    """``(persona index, subject index)`` pairs, seeded: personas take turns in a shuffled
    order, each drawing its subjects without replacement, ``per_persona`` at most."""
    rng = random.Random(f"{seed}:personas")
    order = list(range(personas))
    rng.shuffle(order)
    cap = min(subjects, options.per_persona or subjects, options.pairs)
    draws = {p: random.Random(f"{seed}:personas:{p}").sample(range(subjects), cap) for p in order}
    pairs: list[tuple[int, int]] = []
    for turn in range(cap):
        for persona in order:
            if len(pairs) == options.pairs:
                return pairs
            pairs.append((persona, draws[persona][turn]))
    return pairs


class PersonasStage:
    name: ClassVar[str] = "personas"
    position: ClassVar[int] = 120  # after seed (100), before magpie (150) and evolve (200)
    section: ClassVar[str] = "personas"
    config_sections: ClassVar[tuple[str, ...]] = ("seed", "teacher", "personas")
    prompt_folders: ClassVar[tuple[str, ...]] = ("personas",)
    Options = PersonasOptions

    @staticmethod
    def files_read(config: Config) -> list[Path]:
        return [Path(options_of(config).file)]

    @staticmethod
    def expected_records(config: Config, records: int | None) -> int | None:
        options = options_of(config)
        return ((records or 0) if options.keep_input else 0) + options.pairs

    async def run(self, records: Iterator[Record], ctx: StageContext) -> AsyncIterator[Record]:
        options = options_of(ctx.config)
        personas = load_personas(options.file)
        inputs = []
        for record in records:
            inputs.append(record)
            if options.keep_input:
                yield record
        subjects = subjects_from(inputs, options)
        counts = dict.fromkeys(("pairs", "kept", *REJECTS), 0)
        per_persona: dict[str, int] = {}
        ctx.stats["personas"] = {"counts": counts, "per_persona": per_persona}
        if not options.pairs:
            return
        if not subjects:
            raise ConfigError(
                "personas: nothing to ask about: give input records or `personas.topics`"
            )
        seed = ctx.config.seed if options.seed is None else options.seed
        pairs = draw_pairs(len(personas), len(subjects), options, seed)
        counts["pairs"] = len(pairs)
        asker = QuestionAsker(options, ctx)
        seen = NearDuplicates.from_options(options.dedup, options.dedup.embedder())
        seen.add([record["instruction"] for record in inputs])
        limits = ListLimits(8 * options.max_question_words, options.max_question_words)
        async for (persona_index, subject_index), (completions,) in asker.answers(
            pairs, personas, subjects
        ):
            persona, subject = personas[persona_index], subjects[subject_index]
            completion = completions[0]
            text = first_item(completion.text, limits=limits)
            origin = asker.origin(persona, subject)
            reason = None
            if not text:
                reason = ("empty", "no usable question in the answer")
            elif completion.finish_reason == "length" and not options.keep_truncated:
                reason = ("truncated", f"cut at max_tokens ({options.max_tokens})")
            elif (duplicate := seen.screen([text])[0]) is not None:
                reason = (duplicate.kind, duplicate.reason)
            if reason is not None:
                counts[reason[0]] += 1
                rejected = new_record(text or completion.text.strip() or "(empty)", origin=origin)
                ctx.reject(rejected, filter=f"personas.{reason[0]}", reason=reason[1])
                continue
            counts["kept"] += 1
            per_persona[persona.text] = per_persona.get(persona.text, 0) + 1
            meta = (
                {"persona": {"persona": persona.text, **persona.fields}} if persona.fields else None
            )
            yield new_record(text, origin=origin, meta=meta)


class QuestionAsker:
    """One request per persona × subject pair, resolved in order through the cache."""

    def __init__(self, options: PersonasOptions, ctx: StageContext) -> None:
        self.options = options
        self.dispatcher = ctx.dispatcher()
        self.mode = self.dispatcher.teacher.mode
        prompts = prompts_for(ctx.config)
        self.template = prompts.template(f"personas/question.{self.mode}.jinja")
        self.stops = (
            stop_sequences("personas/question.stop.txt", prompts)
            if self.mode == "completion"
            else ()
        )

    def request(self, pair: tuple[int, int], persona: Persona, subject: Subject) -> Request:
        text = self.template.render(
            persona=persona.text,
            traits=persona.traits(),
            topic=subject.topic,
            from_record=subject.record is not None
            and not subject.record.get("origin", {}).get("path"),
        )
        request_id = f"personas:{pair[0]}:{pair[1]}"
        if self.mode == "chat":
            messages = ({"role": "user", "content": text.strip()},)
            return Request(request_id, self.options.sampling_params(), messages=messages)
        params = self.options.sampling_params(self.stops)
        return Request(request_id, params, prompt=text.rstrip())

    def answers(
        self, pairs: list[tuple[int, int]], personas: list[Persona], subjects: list[Subject]
    ) -> AsyncIterator[Any]:
        return self.dispatcher.map_ordered(
            pairs,
            lambda pair: [self.request(pair, personas[pair[0]], subjects[pair[1]])],
            batch_size=self.options.batch_size,
        )

    def origin(self, persona: Persona, subject: Subject) -> dict[str, Any]:
        origin: dict[str, Any] = {"stage": "personas", "persona": persona.text}
        if subject.record is not None:
            origin["parent_id"] = subject.record["id"]
            path = (subject.record.get("origin") or {}).get("path")
            if path:
                origin["path"] = list(path)
        else:
            origin["topic"] = subject.topic
        origin["model"] = self.dispatcher.teacher.model
        return origin
