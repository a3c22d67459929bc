"""``distillpipe magpie``: instructions the teacher writes from its chat template's pre-query."""

from __future__ import annotations

import os
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
from distillpipe.config import MagpieConfig
from distillpipe.runner import run_stage, spend_ledger_for
from distillpipe.stages import stage_named

RecordsOption = Annotated[
    str | None,
    typer.Option(
        "--input", "-i", help="Records to pass through first (JSONL; - for stdin). Default: none."
    ),
]


def magpie(
    config: ConfigOption,
    input: RecordsOption = None,
    output: OutputOption = "-",
    rejected: RejectedOption = None,
    set: SetOption = None,
    quiet: QuietOption = False,
    max_cost: MaxCostOption = None,
) -> None:
    """Draw instructions from the teacher with Magpie (cached, resumable)."""
    resolved = load(config, set)
    if resolved.magpie is None:  # the command runs the stage with its defaults
        resolved.magpie = MagpieConfig()
    mode = mode_for(quiet)
    budget = budget_for(resolved, max_cost, spend_ledger_for(output))
    result = run_stage(
        stage_named("magpie"),
        resolved,
        input if input is not None else os.devnull,
        output,
        rejected_path=rejected_path_for(output, rejected),
        progress_mode=mode,
        budget=budget,
    )
    summary([(result, False)], mode)
    spend_summary(budget, mode)
