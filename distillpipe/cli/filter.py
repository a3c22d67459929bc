"""``distillpipe filter``: the configured filters, in order; rejected records to their own file."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from distillpipe.cli.common import (
    ConfigOption,
    ExecutorOption,
    InputOption,
    MaxCostOption,
    OutputOption,
    QuietOption,
    SetOption,
    budget_for,
    load,
    mode_for,
    spend_summary,
    summary,
    warn_if_empty,
)
from distillpipe.errors import ConfigError
from distillpipe.executors import executor_for
from distillpipe.io import STDIO
from distillpipe.progress import Mode, stderr
from distillpipe.runner import StageResult, spend_ledger_for
from distillpipe.stages import stage_named

RejectedOption = Annotated[
    str | None,
    typer.Option(
        "--rejected",
        help="Rejected records (JSONL, with reject: {filter, reason, score}). "
        "Default: OUT.rejected.jsonl; none when OUT is - unless given.",
    ),
]


def default_rejected_path(output: str) -> str | None:
    if output == STDIO:
        return None
    for suffix in (".jsonl.gz", ".jsonl"):
        if output.endswith(suffix):
            return output[: -len(suffix)] + ".rejected" + suffix
    return output + ".rejected.jsonl"


def filter(
    config: ConfigOption,
    input: InputOption = "-",
    output: OutputOption = "-",
    rejected: RejectedOption = None,
    set: SetOption = None,
    quiet: QuietOption = False,
    executor: ExecutorOption = None,
    max_cost: MaxCostOption = None,
) -> None:
    """Score and filter records with the config's `filter` list (rejected ones kept aside)."""
    resolved = load(config, set, executor)
    if resolved.filter is None:
        raise ConfigError(f"{config}: filter: the config names no filters")
    mode = mode_for(quiet)
    rejected_path = rejected or default_rejected_path(output)
    budget = budget_for(resolved, max_cost, spend_ledger_for(output))
    result = executor_for(resolved).run_stage(
        stage_named("filter"), resolved, input, output, rejected_path=rejected_path,
        progress_mode=mode, budget=budget,
    )  # fmt: skip
    warn_if_empty(result, input, output, mode)
    summary([(result, False)], mode)
    filter_summary(result, mode)
    spend_summary(budget, mode)


def filter_summary(result: StageResult, mode: Mode) -> None:
    """One row per filter: seen, kept, rejected and the spread of its scores."""
    filters = result.stats.get("filters") or {}
    if mode == "quiet" or not filters:
        return
    table = Table(title="filters", title_justify="left")
    for column in ("filter", "seen", "kept", "rejected", "p10", "p50", "p90"):
        table.add_column(column, justify="left" if column == "filter" else "right")
    for name, stats in filters.items():
        quantiles = stats.get("quantiles") or {}
        table.add_row(
            name,
            f"{stats['seen']:,}",
            f"{stats['kept']:,}",
            f"{stats['rejected']:,}",
            *(_number(quantiles.get(q)) for q in ("p10", "p50", "p90")),
        )
    stderr.print(table)
    for name, stats in filters.items():
        isolation = stats.get("isolation") or {}
        if isolation.get("weaker"):
            missing = "; ".join(isolation.get("missing") or [])
            line = f"{name}: weaker isolation ({isolation.get('level')}): {missing}"
            stderr.print(f"[yellow]{escape(line)}[/yellow]", soft_wrap=True)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"
