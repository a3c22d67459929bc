"""``distillpipe seed``: load seed tasks and grow them with Self-Instruct."""

from __future__ import annotations

from typing import Annotated

import typer

from distillpipe.cli.common import (
    ConfigOption,
    MaxCostOption,
    OutputOption,
    QuietOption,
    RejectedOption,
    SetOption,
    budget_for,
    load,
    mode_for,
    rejected_path_for,
    spend_summary,
    summary,
)
from distillpipe.cli.run import config_input
from distillpipe.errors import ConfigError
from distillpipe.runner import run_stage, spend_ledger_for
from distillpipe.stages import stage_named

SeedsOption = Annotated[
    str | None,
    typer.Option(
        "--input",
        "-i",
        help="Seed tasks: JSONL, CSV, TXT, a dataset folder or hf:<id>; - for stdin. "
        "Default: the config's `input`.",
    ),
]


def seed(
    config: ConfigOption,
    input: SeedsOption = None,
    output: OutputOption = "-",
    rejected: RejectedOption = None,
    set: SetOption = None,
    quiet: QuietOption = False,
    max_cost: MaxCostOption = None,
) -> None:
    """Load seed tasks and bootstrap new instructions from them (cached, resumable)."""
    resolved = load(config, set)
    mode = mode_for(quiet)
    if input is None:
        if resolved.input is None:
            raise ConfigError(f"{config}: input: give the seed tasks with -i or in `input`")
        input = config_input(resolved.input, config)
    budget = budget_for(resolved, max_cost, spend_ledger_for(output))
    result = run_stage(
        stage_named("seed"),
        resolved,
        input,
        output,
        rejected_path=rejected_path_for(output, rejected),
        progress_mode=mode,
        budget=budget,
    )
    summary([(result, False)], mode)
    spend_summary(budget, mode)
