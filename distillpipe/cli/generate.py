"""``distillpipe generate``: teacher responses for every record."""

from __future__ import annotations

from distillpipe.cli.common import (
    ConfigOption,
    ExecutorOption,
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
from distillpipe.executors import executor_for
from distillpipe.runner import spend_ledger_for
from distillpipe.stages import stage_named


def generate(
    config: ConfigOption,
    input: InputOption = "-",
    output: OutputOption = "-",
    rejected: RejectedOption = None,
    set: SetOption = None,
    quiet: QuietOption = False,
    executor: ExecutorOption = None,
    max_cost: MaxCostOption = None,
) -> None:
    """Ask the teacher for n responses per record (cached, resumable)."""
    resolved = load(config, set, executor)
    mode = mode_for(quiet)
    budget = budget_for(resolved, max_cost, spend_ledger_for(output))
    result = executor_for(resolved).run_stage(
        stage_named("generate"),
        resolved,
        input,
        output,
        rejected_path=rejected_path_for(output, rejected),  # generate.until's failures
        progress_mode=mode,
        budget=budget,
    )
    warn_if_empty(result, input, output, mode)
    summary([(result, False)], mode)
    spend_summary(budget, mode)
