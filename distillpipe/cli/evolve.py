"""``distillpipe evolve``: Evol-Instruct rewrites of every record."""

from __future__ import annotations

from distillpipe.cli.common import (
    ConfigOption,
    InputOption,
    MaxCostOption,
    OutputOption,
    QuietOption,
    RejectedOption,
    SetOption,
    load,
    run_one_stage,
)


def evolve(
    config: ConfigOption,
    input: InputOption = "-",
    output: OutputOption = "-",
    rejected: RejectedOption = None,
    set: SetOption = None,
    quiet: QuietOption = False,
    max_cost: MaxCostOption = None,
) -> None:
    """Evolve every instruction for `evolve.rounds` rounds (cached, resumable)."""
    resolved = load(config, set)
    run_one_stage("evolve", resolved, input, output, rejected, quiet, max_cost)
