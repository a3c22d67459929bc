"""Run a whole chain of stages in a run directory, each through the config's executor.

A finished stage whose input and config hashes still match the manifest is
skipped; one whose input, config, prompts or teacher changed runs again, and so
does every stage after it (its input changed). It sits above the runner and the
executors, which both stand below it.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

from distillpipe.config import Config
from distillpipe.errors import ConfigError
from distillpipe.executors import executor_for
from distillpipe.inputs import input_hash
from distillpipe.io import file_hash
from distillpipe.manifest import Manifest
from distillpipe.progress import Mode
from distillpipe.runner import (
    StageResult,
    enabled_stages,
    member_hashes,
    remove_abandoned_run_temps,
    stage_hash,
)
from distillpipe.teachers.base import teacher_identity
from distillpipe.teachers.cost import BudgetGuard


def run_pipeline(
    config: Config,
    run_dir: Path,
    input_path: str | Path,
    *,
    from_stage: str | None = None,
    to_stage: str | None = None,
    progress_mode: Mode = "quiet",
    budget: BudgetGuard | None = None,
) -> list[tuple[StageResult, bool]]:
    """Run every enabled stage in order; returns (result, skipped) per stage."""
    run_dir.mkdir(parents=True, exist_ok=True)
    remove_abandoned_run_temps(run_dir)
    manifest = Manifest(run_dir)
    manifest.data["name"] = config.name
    manifest.data["config"] = config.public_dump()
    stages = enabled_stages(config)
    names = [stage.name for stage in stages]
    for flag, value in (("--from", from_stage), ("--to", to_stage)):
        if value is not None and value not in names:
            raise ConfigError(f"{flag} {value}: not a stage of this run ({', '.join(names)})")
    forced = False
    results: list[tuple[StageResult, bool]] = []
    current = input_path
    identity = functools.cache(lambda: teacher_identity(config.teacher))
    for stage in stages:
        forced = forced or stage.name == from_stage
        output = run_dir / f"{stage.name}.jsonl"
        hashed_input = input_hash(stage, current, config)
        hashed_config = stage_hash(config, stage, identity)
        if not forced and manifest.finished(stage.name, hashed_input, hashed_config, output):
            previous = manifest.data["stages"][stage.name]
            result = StageResult(stage.name, previous["records_in"], previous["records_out"])
            results.append((result, True))
        else:
            started_at = time.time()
            result = executor_for(config).run_stage(
                stage,
                config,
                current,
                output,
                rejected_path=run_dir / f"{stage.name}.rejected.jsonl",
                progress_mode=progress_mode,
                budget=budget,
                state_dir=run_dir / "batches",
            )
            if budget is not None:
                manifest.data["spend"] = budget.as_dict()
            manifest.record(
                stage.name,
                {
                    "status": "done",
                    "input": str(current),
                    "input_hash": hashed_input,
                    "config_hash": hashed_config,
                    **(
                        {"teacher_hashes": member_hashes(config, stage)}
                        if config.teachers is not None
                        else {}
                    ),
                    "output": output.name,
                    "output_hash": file_hash(output),
                    "started_at": started_at,
                    "finished_at": time.time(),
                    **result.as_dict(),
                },
            )
            results.append((result, False))
        current = output
        if stage.name == to_stage:
            break
    return results
