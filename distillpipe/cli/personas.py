"""``distillpipe personas``: the questions a sample of personas would ask about the input
records (or the config's topics)."""

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
    require_section,
    run_one_stage,
)


def personas(
    config: ConfigOption,
    input: PassThroughOption = None,
    output: OutputOption = "-",
    rejected: RejectedOption = None,
    set: SetOption = None,
    quiet: QuietOption = False,
    max_cost: MaxCostOption = None,
) -> None:
    """Write persona × topic questions (cached, resumable); the input records are the topics
    unless the config lists `personas.topics`."""
    resolved = load(config, set)
    require_section(resolved, "personas", config, "its persona `file` at least")
    run_one_stage("personas", resolved, input, output, rejected, quiet, max_cost)
