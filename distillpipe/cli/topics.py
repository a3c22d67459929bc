"""``distillpipe topics``: a topic taxonomy grown by the teacher, and questions about its leaves."""

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


def topics(
    config: ConfigOption,
    input: PassThroughOption = None,
    output: OutputOption = "-",
    rejected: RejectedOption = None,
    set: SetOption = None,
    quiet: QuietOption = False,
    max_cost: MaxCostOption = None,
) -> None:
    """Grow the config's topic tree and write questions about its leaves (cached, resumable);
    the tree goes to topic_tree.json beside the output."""
    resolved = load(config, set)
    require_section(resolved, "topics", config, "subjects or a domain")
    run_one_stage("topics", resolved, input, output, rejected, quiet, max_cost)
