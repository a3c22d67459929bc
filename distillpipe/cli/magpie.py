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
    load,
    run_one_stage,
)
from distillpipe.config import MagpieConfig

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
    run_one_stage(
        "magpie",
        resolved,
        input if input is not None else os.devnull,
        output,
        rejected=rejected,
        quiet=quiet,
        max_cost=max_cost,
        warn_on_empty_input=False,
    )
