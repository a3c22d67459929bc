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
    load,
    run_one_stage,
)
from distillpipe.executors import executor_for


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
    run_one_stage(
        "generate",
        resolved,
        input,
        output,
        rejected,  # generate.until's failures
        quiet,
        max_cost,
        run=executor_for(resolved).run_stage,
    )
