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
    load,
    run_one_stage,
)
from distillpipe.cli.run import config_input
from distillpipe.errors import ConfigError

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
    if input is None:
        if resolved.input is None:
            raise ConfigError(f"{config}: input: give the seed tasks with -i or in `input`")
        input = config_input(resolved.input, config)
    run_one_stage("seed", resolved, input, output, rejected, quiet, max_cost)
