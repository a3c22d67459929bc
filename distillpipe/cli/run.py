"""``distillpipe run``: the whole chain in a run directory, resumable."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from distillpipe.cli.common import (
    ExecutorOption,
    MaxCostOption,
    QuietOption,
    SetOption,
    budget_for,
    load,
    mode_for,
    spend_summary,
    summary,
)
from distillpipe.cli.filter import filter_summary
from distillpipe.config import Config
from distillpipe.errors import ConfigError
from distillpipe.pipeline import run_pipeline
from distillpipe.progress import message
from distillpipe.runner import SPEND_LEDGER, enabled_stages
from distillpipe.seeds import HF_PREFIX


def run(
    config: Annotated[Path, typer.Argument(help="The YAML config.")],
    set: SetOption = None,
    run_dir: Annotated[
        Path | None, typer.Option(help="Default: <config.run_dir>/<config.name>.")
    ] = None,
    from_stage: Annotated[
        str | None, typer.Option("--from", help="Re-run from this stage on.")
    ] = None,
    to_stage: Annotated[str | None, typer.Option("--to", help="Stop after this stage.")] = None,
    quiet: QuietOption = False,
    executor: ExecutorOption = None,
    max_cost: MaxCostOption = None,
) -> None:
    """Run every configured stage; finished stages whose inputs and config match are skipped."""
    resolved = load(config, set, executor)
    mode = mode_for(quiet)
    input_path = run_input(resolved, config)
    if not input_path.startswith(HF_PREFIX) and not Path(input_path).exists():
        raise ConfigError(f"{config}: input: no such file: {input_path}")
    target = run_dir or Path(resolved.run_dir) / resolved.name
    budget = budget_for(resolved, max_cost, target / SPEND_LEDGER)
    results = run_pipeline(
        resolved,
        target,
        input_path,
        from_stage=from_stage,
        to_stage=to_stage,
        progress_mode=mode,
        budget=budget,
    )
    summary(results, mode)
    spend_summary(budget, mode)
    for result, skipped in results:
        if not skipped:
            filter_summary(result, mode)
    message(mode, f"run directory: {target}")


def run_input(config: Config, config_path: Path) -> str:
    """What a run starts from: the config's ``input``, or nothing (``os.devnull``) when
    its first stage makes its own records (``needs_input = False``: magpie)."""
    if config.input is not None:
        return config_input(config.input, config_path)
    if getattr(enabled_stages(config)[0], "needs_input", True):
        raise ConfigError(f"{config_path}: input: `run` needs the records file to start from")
    return os.devnull


def config_input(value: str, config_path: Path) -> str:
    """The config's ``input``: a path relative to the config, or ``hf:<id or path>`` as
    given (an ``hf:`` path is the datasets library's, relative to the working folder)."""
    return value if value.startswith(HF_PREFIX) else str(resolve_relative(value, config_path))


def resolve_relative(path: str, config_path: Path) -> Path:
    """Paths in a config are relative to the config file's folder."""
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else config_path.parent / candidate
