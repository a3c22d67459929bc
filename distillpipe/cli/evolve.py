"""``distillpipe evolve``: Evol-Instruct rewrites of every record."""

from __future__ import annotations

from distillpipe.cli.common import (
    ConfigOption,
    InputOption,
    OutputOption,
    QuietOption,
    RejectedOption,
    SetOption,
    load,
    mode_for,
    rejected_path_for,
    summary,
    warn_if_empty,
)
from distillpipe.runner import run_stage
from distillpipe.stages import stage_named


def evolve(
    config: ConfigOption,
    input: InputOption = "-",
    output: OutputOption = "-",
    rejected: RejectedOption = None,
    set: SetOption = None,
    quiet: QuietOption = False,
) -> None:
    """Evolve every instruction for `evolve.rounds` rounds (cached, resumable)."""
    resolved = load(config, set)
    mode = mode_for(quiet)
    result = run_stage(
        stage_named("evolve"),
        resolved,
        input,
        output,
        rejected_path=rejected_path_for(output, rejected),
        progress_mode=mode,
    )
    warn_if_empty(result, input, output, mode)
    summary([(result, False)], mode)
