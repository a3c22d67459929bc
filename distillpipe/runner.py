"""Run stages: one at a time from the CLI, or a whole chain in a run directory.

A run directory (``runs/<name>/``) holds each stage's output, its rejected
records and ``manifest.json``, which records every finished stage with the
hashes of its input and of the config sections it reads (with the identity of
the teacher's model, for a stage that reads the teacher's section).
``distillpipe run`` skips a finished stage whose hashes still match and re-runs
one whose input, config or model changed; an interrupted stage resumes from
the response cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distillpipe.config import Config
from distillpipe.inputs import config_hash, stage_records
from distillpipe.io import STDIO, JsonlWriter
from distillpipe.manifest import MANIFEST
from distillpipe.panel_stats import member_stats, merged_stats
from distillpipe.progress import Mode, StageProgress
from distillpipe.records import content_hash
from distillpipe.stages import registered_stages
from distillpipe.stages.base import Record, Stage, StageContext, expected_counts
from distillpipe.teachers.base import teacher_identity
from distillpipe.teachers.cost import BudgetGuard
from distillpipe.temps import remove_abandoned_temps

SPEND_LEDGER = "spend.jsonl"  # in the run directory: what every invocation of the run spent


@dataclass
class StageResult:
    name: str
    records_in: int = 0
    records_out: int = 0
    seconds: float = 0.0
    stats: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "records_in": self.records_in,
            "records_out": self.records_out,
            "seconds": round(self.seconds, 3),
            "stats": self.stats,
        }


def count_lines(path: str | Path) -> int | None:
    if str(path) == STDIO or str(path).endswith(".gz") or not Path(path).is_file():
        return None
    with Path(path).open("rb") as stream:
        return sum(block.count(b"\n") for block in iter(lambda: stream.read(1 << 20), b""))


def run_stage(
    stage: Stage,
    config: Config,
    input_path: str | Path,
    output_path: str | Path,
    *,
    rejected_path: str | Path | None = None,
    progress_mode: Mode = "quiet",
    budget: BudgetGuard | None = None,
    state_dir: Path | None = None,
) -> StageResult:
    """Drain one stage from ``input_path`` into ``output_path`` (both atomic)."""
    result = StageResult(stage.name)
    started = time.perf_counter()

    def counted(records: Iterator[Record]) -> Iterator[Record]:
        for record in records:
            result.records_in += 1
            yield record

    rejected = JsonlWriter(rejected_path) if rejected_path else None
    target = None if str(output_path) == STDIO else Path(output_path)
    ctx = StageContext(
        config,
        progress_mode=progress_mode,
        rejected=rejected,
        output_path=target,
        budget=budget,
        state_dir=state_dir or _state_dir_for(output_path),
        stage=stage.name,
    )
    records, calls = expected_counts(stage, config, count_lines(input_path))
    progress = StageProgress(
        progress_mode, stage.name, records, calls=calls, extra=lambda: _live(ctx)
    )
    ctx.on_call_done = progress.call_done
    is_async = finished = False
    try:
        with JsonlWriter(output_path) as writer, long_lived_objects_frozen():
            inputs = stage_records(stage, input_path, config)
            outputs = stage.run(counted(inputs), ctx)
            if inspect.isasyncgen(outputs):
                is_async = True
                asyncio.run(_drain_async(outputs, writer, progress, ctx))
            else:
                for record in outputs:
                    writer.write(record)
                    progress.advance()
        if rejected is not None:
            rejected.commit()
        finished = True
    except BaseException:
        if rejected is not None:
            rejected.abort()
        raise
    finally:
        progress.close(finished=finished)
        if not is_async:
            asyncio.run(ctx.aclose())
    result.records_out = writer.count
    result.seconds = time.perf_counter() - started
    result.stats = dict(ctx.stats)
    failures = result.stats.pop("teacher_failures", None)
    if ctx._dispatchers:
        result.stats["teacher"] = merged_stats(ctx._dispatchers.values()).as_dict()
        if config.teachers is not None:  # a panel: each member's own accounting
            result.stats["teachers"] = member_stats(ctx._dispatchers, failures)
    return result


async def _drain_async(
    outputs: AsyncIterator[Record], writer: JsonlWriter, progress: StageProgress, ctx: StageContext
) -> None:
    try:
        async for record in outputs:
            writer.write(record)
            progress.advance()
    finally:
        await outputs.aclose()
        await ctx.aclose()


@contextlib.contextmanager
def long_lived_objects_frozen() -> Iterator[None]:
    """Keep the cyclic garbage collector off what exists before the stage streams.

    Records are acyclic and freed by reference counting, but every allocation
    counts towards collections whose oldest generation re-walks every module,
    model and config object loaded so far: ~12 % of a streaming filter's time.
    ``gc.freeze`` parks those objects until the stage ends; someone else's
    freeze is left alone.
    """
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _live(ctx: StageContext) -> str:
    if not ctx._dispatchers:
        return ""
    stats = merged_stats(ctx._dispatchers.values())
    priced = any(d.price is not None for d in ctx._dispatchers.values())
    cost = f", ${stats.cost_usd:,.4f}" if priced else ""
    return f"{stats.completion_tokens:,} tok, {stats.cache_hits:,} cached{cost}"


def _state_dir_for(output_path: str | Path) -> Path:
    """Where a stage run outside a run directory keeps its batch journal."""
    if str(output_path) == STDIO:
        from distillpipe.cache import default_cache_dir

        return default_cache_dir() / "batches"
    output = Path(output_path)
    return output.parent / f".{output.name}.batches"


def spend_ledger_for(output_path: str | Path) -> Path | None:
    """The spend ledger of a stage run outside a run directory: beside its output
    (none for stdout, which names nothing a rerun could find again)."""
    if str(output_path) == STDIO:
        return None
    output = Path(output_path)
    return output.parent / f".{output.name}.{SPEND_LEDGER}"


def stage_hash(config: Config, stage: Stage, identity: Callable[[], dict[str, Any]]) -> str:
    """The hash of the config sections ``stage`` reads (with the override prompts it reads)
    and, when they hold the teacher's, of the teacher's ``identity()``: another model
    behind the same config redoes it."""
    sections = config_hash(stage, config)  # the sections, and the prompt overrides it reads
    if "teacher" not in stage.config_sections:
        return sections
    if config.teachers is not None:  # a panel: the members it asks, each by its own hash
        sections = config_hash(stage, config, exclude=("teacher",))
        return content_hash({"config": sections, "teachers": member_hashes(config, stage)})
    return content_hash({"config": sections, "teacher": identity()})


def stage_members(config: Config, stage: Stage) -> list[str]:
    """The panel members a stage asks: generate all; a stage that names one (its
    section's ``teacher``, a judge filter's) that one; a stage asking none, none."""
    if stage.name == "generate":
        return [member.name for member in config.panel_members() if member.answers]
    if stage.name == "export":
        return []
    if stage.name == "filter":
        named = [
            getattr(options, "teacher", None)
            for options in config.filter or []
            if getattr(options, "teacher_params", lambda: None)() is not None
        ]
        return sorted({config.member(name).name for name in named})
    section = config.section(stage.section)
    return [config.member(getattr(section, "teacher", None)).name]


def member_hashes(config: Config, stage: Stage) -> dict[str, str]:
    """Each panel member the stage asks: the hash of its block and its model's identity."""
    blocks = {block["name"]: block for block in config.public_dump().get("teachers") or []}
    return {
        name: content_hash(
            {"member": blocks[name], "identity": teacher_identity(config.member(name).teacher)}
        )
        for name in stage_members(config, stage)
    }


def enabled_stages(config: Config) -> list[Stage]:
    """The stages a config runs, in pipeline order: generate, and those whose section it sets."""
    chosen = []
    for stage in registered_stages():
        section = config.section(stage.section)
        if stage.name == "generate" or (section is not None and getattr(section, "enabled", True)):
            chosen.append(stage)
    return chosen


def remove_abandoned_run_temps(run_dir: Path) -> None:
    """What a killed run left of the files runs write here: each stage's output, its
    rejected records, its folder (the export) and the files it writes beside its output
    (``side_files``: the topic tree), and the manifest. A temporary
    whose writer still runs (a concurrent run) is kept."""
    targets = [run_dir / MANIFEST]
    for stage in registered_stages():
        names = (
            f"{stage.name}.jsonl",
            f"{stage.name}.rejected.jsonl",
            stage.name,
            *getattr(stage, "side_files", ()),
        )
        targets += [run_dir / name for name in names]
    for target in targets:
        remove_abandoned_temps(target)
