"""``distillpipe magpie``: instructions the teacher writes from its chat template's pre-query."""

from __future__ import annotations

from distillpipe.cli.common import (
    ConfigOption,
    MaxCostOption,
    OutputOption,
    PassThroughOption,
    QuietOption,
    RejectedOption,
    SetOption,
    load,
    run_one_stage,
)
from distillpipe.config import MagpieConfig


def magpie(
    config: ConfigOption,
    input: PassThroughOption = None,
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
    run_one_stage("magpie", resolved, input, output, rejected, quiet, max_cost)
