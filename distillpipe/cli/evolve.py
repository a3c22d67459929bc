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
    budget_for,
    load,
    mode_for,
    rejected_path_for,
    spend_summary,
    summary,
    warn_if_empty,
)
from distillpipe.runner import run_stage, spend_ledger_for
from distillpipe.stages import stage_named


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
    mode = mode_for(quiet)
    budget = budget_for(resolved, max_cost, spend_ledger_for(output))
    result = run_stage(
        stage_named("evolve"),
        resolved,
        input,
        output,
        rejected_path=rejected_path_for(output, rejected),
        progress_mode=mode,
        budget=budget,
    )
    warn_if_empty(result, input, output, mode)
    summary([(result, False)], mode)
    spend_summary(budget, mode)
