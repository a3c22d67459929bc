"""What a run would send and cost, stage by stage, without sending anything.

Stages are taken in pipeline order, as ``distillpipe run`` takes them:

- a stage finished in the run directory (its manifest hashes match) sends
  nothing, and its output is the next stage's input;
- any other stage that can call a teacher (an async stage, by the stage
  contract) is replayed through the dispatcher a run uses, with a teacher
  that sends nothing (``dry_run.py``): the cache answers what it holds, every
  other call is counted as one to send and answered with a stand-in, and the
  stage's output is the next stage's input.

A count is exact when nothing made up shaped it: the stage's input is what a
run would read, and no stand-in went into a request the stage built later.
Otherwise the stand-ins take the costliest path and the count is an upper
bound (``exact`` False, "at most"): a Self-Instruct round whose answer is
missing keeps no task, so every round runs (``max_rounds`` ×
``requests_per_round``), and the stage then writes ``target`` tasks of
``max_words`` words; every Evol-Instruct rewrite survives every round; every
stand-in is unique (a run's repeats go out once) and ``max_tokens`` long for
whatever reads it, a judge included. Filters that ask no teacher are left out
of the replay (they would load scoring models), so a judge after one of them
counts every record.
"""

from __future__ import annotations

import asyncio
import inspect
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from pydantic import SecretStr

from distillpipe.cache import ResponseCache, default_cache_path
from distillpipe.config import Config, SelfInstructConfig
from distillpipe.dry_run import (
    OfflineTeacher,
    PlannedCache,
    ReplayDispatcher,
    StandIn,
    Tally,
    empty_stand_in,
    long_stand_in,
)
from distillpipe.errors import ConfigError, MissingApiKeyError
from distillpipe.filters.base import build_filter
from distillpipe.inputs import input_hash, stage_records
from distillpipe.io import JsonlWriter
from distillpipe.manifest import Manifest
from distillpipe.records import new_record
from distillpipe.runner import enabled_stages, stage_hash
from distillpipe.stages.base import Record, Stage, StageContext, build_teacher
from distillpipe.teachers.base import Request, Teacher
from distillpipe.teachers.cost import (
    Price,
    encoding,
    find_price,
    is_batch,
    price_for_teacher,
    prompt_tokens,
)


@dataclass
class StagePlan:
    stage: str
    done: bool = False  # finished in the run directory: skipped, sends nothing
    calls_cached: int = 0
    calls_to_send: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0  # at most: every call to send at its max_tokens
    cost_usd: float | None = 0.0  # at most; None when the price is unknown
    exact: bool = True  # calls_to_send exact, else an upper bound
    tokens_exact: bool = True  # prompt_tokens counted on the very prompts, else a bound


@dataclass
class Plan:
    teacher: str
    batch: bool
    price: Price | None
    price_source: str
    tokenizer: str
    stages: list[StagePlan] = field(default_factory=list)

    @property
    def total(self) -> StagePlan:
        costs = [stage.cost_usd for stage in self.stages]
        return StagePlan(
            "total",
            calls_cached=sum(stage.calls_cached for stage in self.stages),
            calls_to_send=sum(stage.calls_to_send for stage in self.stages),
            prompt_tokens=sum(stage.prompt_tokens for stage in self.stages),
            output_tokens=sum(stage.output_tokens for stage in self.stages),
            cost_usd=None if None in costs else sum(c or 0.0 for c in costs),
            exact=all(stage.exact for stage in self.stages),
            tokens_exact=all(stage.tokens_exact for stage in self.stages),
        )


@dataclass(frozen=True)
class StageRules:
    """How a stage's answers shape what it asks, and so how its replay is read."""

    stand_in: StandIn = long_stand_in
    asks_teacher: bool = True
    requests_follow_answers: bool = True  # later requests are built from earlier answers
    calls_follow_answers: bool = True  # ... and how many there are depends on them
    bounded: bool = False  # the replay leaves out steps that thin its calls' inputs
    config: Config | None = None  # the config the replay runs with, when not the run's


def rules_for(stage: Stage, config: Config) -> StageRules:
    """A stage this module does not know is read warily: every answer may matter."""
    if stage.name == "seed":  # no task kept, so every round runs
        section = config.self_instruct or SelfInstructConfig()
        return StageRules(stand_in=empty_stand_in, asks_teacher=section.target > 0)
    if stage.name == "evolve" and config.evolve is not None:
        checks = config.evolve.elimination
        asks_checks = checks.equality == "teacher" or checks.answer_check
        return StageRules(
            requests_follow_answers=config.evolve.rounds > 1 or asks_checks,
            # a rewrite per lineage and round whatever survives; the checks follow the rewrites
            calls_follow_answers=asks_checks,
        )
    if stage.name == "generate":
        return StageRules(
            # a conversation's next turn is built from the turns before it
            requests_follow_answers=config.generate.conversation is not None,
            calls_follow_answers=False,
        )
    if stage.name == "filter":
        filters = config.filter or []
        asks = [build_filter(options, config).uses_teacher for options in filters]
        last_asking = max((i for i, a in enumerate(asks) if a), default=-1)
        return StageRules(
            asks_teacher=any(asks),
            requests_follow_answers=sum(asks) > 1,
            calls_follow_answers=sum(asks) > 1,
            bounded=not all(asks[: last_asking + 1]),
            config=config.model_copy(
                update={"filter": [o for o, a in zip(filters, asks, strict=True) if a]}
            ),
        )
    return StageRules()


def asks_teacher(stage: Stage, config: Config) -> bool:
    """Whether ``stage`` may call the teacher: an async stage (the stage contract) that
    has something to ask."""
    return inspect.isasyncgenfunction(stage.run) and rules_for(stage, config).asks_teacher


@dataclass
class _Input:
    """A stage's input: where it lies and how far it is what a run would read."""

    path: Path
    content_known: bool = True  # the very records (no stand-in went into them)


def plan_run(
    config: Config,
    run_dir: Path,
    input_path: Path,
    *,
    from_stage: str | None = None,
    to_stage: str | None = None,
) -> Plan:
    """The plan of ``distillpipe run`` with these arguments; nothing is sent or written."""
    if config.teachers is not None and len(config.teachers) > 1:
        raise ConfigError(
            "teachers: estimate plans a single teacher's calls; estimate each member "
            "alone (a config with its block as `teacher:`)"
        )
    stages = enabled_stages(config)
    names = [stage.name for stage in stages]
    for flag, value in (("--from", from_stage), ("--to", to_stage)):
        if value is not None and value not in names:
            raise ConfigError(f"{flag} {value}: not a stage of this run ({', '.join(names)})")
    if to_stage is not None:
        stages = stages[: names.index(to_stage) + 1]
    asking = [i for i, stage in enumerate(stages) if asks_teacher(stage, config)]
    stages = stages[: asking[-1] + 1] if asking else []  # what follows asks no teacher
    teacher = offline_teacher(config)
    price, source = price_of(config, teacher)
    plan = Plan(
        f"{config.teacher.backend}:{teacher.model}",
        is_batch(teacher),
        price,
        source,
        tokenizer_note(config),
    )
    manifest = Manifest(run_dir)
    cache_path = Path(config.cache.path) if config.cache.path else default_cache_path()
    # no cache file yet: nothing is cached, and none is made
    cache = ResponseCache(cache_path) if config.cache.enabled and cache_path.exists() else None
    planned: dict[str, tuple[StandIn, int]] = {}
    current, forced = _Input(input_path), False
    try:
        with tempfile.TemporaryDirectory(prefix="distillpipe-estimate-") as scratch:
            for stage in stages:
                forced = forced or stage.name == from_stage
                output = run_dir / f"{stage.name}.jsonl"
                if (
                    not forced
                    and current.content_known
                    and manifest.finished(
                        stage.name,
                        stage_input_hash(stage, current.path, config),
                        stage_hash(config, stage, lambda: teacher.identity),
                        output,
                    )
                ):
                    plan.stages.append(StagePlan(stage.name, done=True))
                    current = _Input(output)
                    continue
                row, current = _replay(
                    stage, config, current, Path(scratch), teacher, cache, planned
                )
                if asks_teacher(stage, config):
                    row.cost_usd = _cost(plan, row)
                    plan.stages.append(row)
    finally:
        if cache is not None:
            cache.close()
        asyncio.run(teacher.aclose())
    return plan


# How a run reads a stage's input and hashes it and the config for the manifest: the
# very functions run_stage and run_pipeline use, so a plan finds what a run finds.


def stage_input(stage: Stage, path: Path, config: Config) -> Iterator[Record]:
    return stage_records(stage, path, config)


def stage_input_hash(stage: Stage, path: Path, config: Config) -> str:
    return input_hash(stage, path, config)


def _replay(
    stage: Stage,
    config: Config,
    given: _Input,
    scratch: Path,
    teacher: Teacher,
    cache: ResponseCache | None,
    planned: dict[str, tuple[StandIn, int]],
) -> tuple[StagePlan, _Input]:
    rules = rules_for(stage, config)
    tally = Tally()
    offline = OfflineTeacher(
        teacher,
        tally,
        rules.stand_in,
        lambda request: _prompt_tokens(request, teacher, config),
    )
    view = (  # a run with the cache off sends a repeated call again
        PlannedCache(
            cache, rules.stand_in, planned, replay_planned=not rules.requests_follow_answers
        )
        if config.cache.enabled
        else None
    )
    dispatcher = ReplayDispatcher(offline, view, config.seed, tally=tally)  # type: ignore[arg-type]
    output = scratch / f"{stage.name}.jsonl"
    records_in, written = _drain(stage, rules.config or config, given.path, output, dispatcher)
    if tally.to_send:
        _pad(stage, config, records_in, written, output)
    # Made-up input makes every count a bound: it may hold more records than a run's,
    # and none of the repeats a run's may hold (identical calls go out once).
    known = given.content_known and not rules.bounded
    row = StagePlan(
        stage.name,
        calls_cached=view.cached_hits if view is not None else 0,
        calls_to_send=tally.to_send,
        prompt_tokens=tally.prompt_tokens,
        output_tokens=tally.output_tokens,
        exact=known and not (rules.calls_follow_answers and tally.resolved_after_stand_in),
        tokens_exact=known
        and not (rules.requests_follow_answers and tally.resolved_after_stand_in),
    )
    made_up = tally.to_send > 0 or not given.content_known or rules.config is not None
    following = _Input(output, content_known=not made_up)
    return row, following


def _drain(
    stage: Stage, config: Config, source: Path, output: Path, dispatcher: ReplayDispatcher
) -> tuple[int, int]:
    """Run ``stage`` from ``source`` into ``output`` as ``run_stage`` would; (in, out) counts."""
    counted = [0]

    def counting(records: Iterator[Record]) -> Iterator[Record]:
        for record in records:
            counted[0] += 1
            yield record

    ctx = StageContext(config, _dispatcher=dispatcher)
    with JsonlWriter(output) as writer:
        outputs = stage.run(counting(stage_input(stage, source, config)), ctx)
        if inspect.isasyncgen(outputs):

            async def drain() -> None:
                async for record in outputs:
                    writer.write(record)

            asyncio.run(drain())
        else:
            writer.write_many(outputs)
    return counted[0], writer.count


def _pad(stage: Stage, config: Config, records_in: int, written: int, output: Path) -> None:
    """Placeholders up to the records a stage may write at most (Self-Instruct's target,
    each ``max_words`` long), when answers it lacked might have kept more."""
    expected = getattr(stage, "expected_records", None)
    bound = expected(config, records_in) if expected else None
    if bound is None or bound <= written:
        return
    words = ["lorem"] * ((config.self_instruct or SelfInstructConfig()).max_words - 1)
    with output.open("ab") as stream:
        for index in range(bound - written):
            record = new_record(
                " ".join([f"placeholder-{index}", *words]),
                origin={"stage": stage.name, "placeholder": True},
            )
            stream.write(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))


def offline_teacher(config: Config) -> Teacher:
    """The configured teacher, built but never asked: nothing is loaded, launched or sent.
    It needs no API key (none leaves this process), so a missing one is no error here."""
    try:
        return build_teacher(config)
    except MissingApiKeyError:
        options = config.teacher.model_copy(update={"api_key": SecretStr("")})
        return build_teacher(config.model_copy(update={"teacher": options}))


def price_of(config: Config, teacher: Teacher) -> tuple[Price | None, str]:
    """The teacher's price and where it comes from."""
    overrides = {model: Price(**row.model_dump()) for model, row in config.cost.prices.items()}
    price = price_for_teacher(teacher, overrides)
    if price is None:
        return None, f"unknown: add cost.prices.{teacher.model} to the config"
    if any(teacher.model.startswith(prefix) for prefix in overrides):
        return price, "config cost.prices"
    if find_price(teacher.model) is not None:
        return price, "prices.yaml"
    return price, "local teacher"


def tokenizer_note(config: Config) -> str:
    name = encoding(config.teacher.model, config.teacher.backend).name
    if config.teacher.backend == "anthropic":
        return f"approximate: Anthropic publishes no tokenizer, counted with {name}"
    if config.teacher.backend == "openai":
        return f"tiktoken {name}"
    return f"approximate: counted with tiktoken {name}, not the model's own tokenizer"


def _prompt_tokens(request: Request, teacher: Teacher, config: Config) -> int:
    return prompt_tokens(request, teacher.model, config.teacher.backend)


def _cost(plan: Plan, row: StagePlan) -> float | None:
    if plan.price is None:
        return None
    return plan.price.cost(row.prompt_tokens, row.output_tokens, batch=plan.batch)
