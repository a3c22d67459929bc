"""What every command shares: config loading, options, error handling, the summary table."""

from __future__ import annotations

import os
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from distillpipe.config import Config, load_config
from distillpipe.errors import ConfigError
from distillpipe.panel_stats import add_member_stats
from distillpipe.progress import Mode, default_mode, message, stderr
from distillpipe.runner import StageResult, run_stage, spend_ledger_for
from distillpipe.stages import stage_named
from distillpipe.teachers.cost import BudgetGuard
from distillpipe.teachers.ledger import SpendLedger

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="The YAML config.")]
InputOption = Annotated[str, typer.Option("--input", "-i", help="Input JSONL; - for stdin.")]
OutputOption = Annotated[str, typer.Option("--output", "-o", help="Output JSONL; - for stdout.")]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a config key, e.g. --set generate.n=4 (repeatable)."),
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress, no summary.")]
PassThroughOption = Annotated[
    str | None,
    typer.Option(
        "--input", "-i", help="Records to pass through first (JSONL; - for stdin). Default: none."
    ),
]
RejectedOption = Annotated[
    str | None,
    typer.Option(help="Rejected records JSONL. Default: <OUT>.rejected.jsonl (none for -o -)."),
]
MaxCostOption = Annotated[
    float | None,
    typer.Option(
        "--max-cost",
        min=0.0,
        help="Stop before teacher calls would cost more than this many USD (resumable).",
    ),
]


def rejected_path_for(output: str, rejected: str | None) -> str | None:
    if rejected is not None or output == "-":
        return rejected
    return f"{output.removesuffix('.gz').removesuffix('.jsonl')}.rejected.jsonl"


class ExecutorName(StrEnum):
    local = "local"
    ray = "ray"


ExecutorOption = Annotated[
    ExecutorName | None,
    typer.Option(help="Where teacher calls run; overrides the config's executor.type."),
]


def load(
    config_path: Path, overrides: list[str] | None, executor: ExecutorName | None = None
) -> Config:
    config = load_config(config_path, overrides or [])
    if executor is not None:
        config.executor = config.executor.model_copy(update={"type": executor.value})
    return config


def budget_for(
    config: Config, max_cost: float | None, ledger: Path | None = None
) -> BudgetGuard | None:
    """The run's budget: --max-cost wins over the config's cost.max_cost, and what the
    ``ledger`` says earlier invocations spent counts against it. With a ledger and no
    limit, the guard only records what is spent (so a later capped rerun counts it)."""
    limit = max_cost if max_cost is not None else config.cost.max_cost
    if limit is None and ledger is None:
        return None
    return BudgetGuard(limit, SpendLedger(ledger) if ledger is not None else None)


def spend_summary(budget: BudgetGuard | None, mode: Mode) -> None:
    """One line: what earlier invocations of this run spent, what this one did, what is left."""
    if mode == "quiet" or budget is None:
        return
    if not (budget.spent_before or budget.spent or budget.limit is not None):
        return
    line = f"spent before: {budget.spent_before:,.4f} USD, spent now: {budget.spent:,.4f} USD"
    left = budget.left()
    if left is not None:
        line += f", budget left: {left:,.4f} USD of {budget.limit:g}"
    message(mode, line)


def mode_for(quiet: bool) -> Mode:
    return default_mode(quiet)


def summary(results: list[tuple[StageResult, bool]], mode: Mode) -> None:
    if mode == "quiet":
        return
    teachers = [result.stats.get("teacher", {}) for result, _ in results]
    # calls answered by an identical call of the same stage: shown only when some stage had one
    duplicates = any(t.get("duplicate_calls", 0) for t in teachers)
    table = Table(title="distillpipe summary", title_justify="left")
    columns = (
        "stage", "status", "in", "out", "rejected", "teacher calls", "cache hits",
        *(("duplicate calls",) if duplicates else ()), "tokens", "cost",
    )  # fmt: skip
    for column in (*columns, "time"):
        table.add_column(column, justify="left" if column in ("stage", "status") else "right")
    for (result, skipped), teacher in zip(results, teachers, strict=True):
        rejected = sum(result.stats.get("rejected", {}).values())
        tokens = teacher.get("prompt_tokens", 0) + teacher.get("completion_tokens", 0)
        table.add_row(
            result.name,
            "skipped: done" if skipped else "ran",
            f"{result.records_in:,}",
            f"{result.records_out:,}",
            f"{rejected:,}",
            f"{teacher.get('teacher_calls', 0):,}",
            f"{teacher.get('cache_hits', 0):,}",
            *((f"{teacher.get('duplicate_calls', 0):,}",) if duplicates else ()),
            f"{tokens:,}",
            f"${teacher.get('cost_usd', 0.0):,.4f}",
            f"{result.seconds:,.1f}s",
        )
    if len(results) > 1:
        total_tokens = sum(
            t.get("prompt_tokens", 0) + t.get("completion_tokens", 0) for t in teachers
        )
        total_cost = sum(t.get("cost_usd", 0.0) for t in teachers)
        blanks = ("",) * (len(columns) - 3)
        table.add_row("total", *blanks, f"{total_tokens:,}", f"${total_cost:,.4f}", "")
    stderr.print(table)
    teacher_summary(results)


def teacher_summary(results: list[tuple[StageResult, bool]]) -> None:
    """A panel's accounting per teacher over the stages that ran, and its win rates."""
    totals: dict[str, dict] = {}
    wins: dict[str, dict] = {}
    for result, _ in results:
        add_member_stats(totals, result.stats.get("teachers") or {})
        wins = (result.stats.get("export") or {}).get("teacher_wins") or wins
    if not totals:
        return
    table = Table(title="teachers", title_justify="left")
    columns = ("teacher", "calls", "cache hits", "sent", "tokens", "cost", "latency",
               "failures", "chosen")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column == "teacher" else "right")
    for name, row in totals.items():
        tokens = row.get("prompt_tokens", 0) + row.get("completion_tokens", 0)
        latency = row.get("latency_s")
        won = wins.get(name)
        table.add_row(
            name,
            f"{row.get('calls', 0):,}",
            f"{row.get('cache_hits', 0):,}",
            f"{row.get('teacher_calls', 0):,}",
            f"{tokens:,}",
            f"${row.get('cost_usd', 0.0):,.4f}",
            "" if latency is None else f"{latency:.2f}s",
            f"{row.get('failures', 0):,}",
            "" if won is None else f"{won['chosen']:,} ({100 * won['win_rate']:.0f}%)",
        )
    stderr.print(table)


def warn_if_empty(result: StageResult, input_path: str, output_path: str, mode: Mode) -> None:
    if result.records_in == 0:
        source = "stdin" if input_path == "-" else input_path
        target = "stdout" if output_path == "-" else output_path
        message(mode, f"[yellow]{source} holds no records; wrote an empty {target}[/yellow]")


def require_section(config: Config, section: str, config_path: Path, needs: str) -> None:
    """A stage command whose stage has no defaults to run with: its section must be set."""
    if config.section(section) is None:
        raise ConfigError(f"{config_path}: {section}: the config has no `{section}:` ({needs})")


def run_one_stage(
    name: str,
    config: Config,
    input: str | None,
    output: str,
    rejected: str | None,
    quiet: bool,
    max_cost: float | None,
    *,
    run: Callable[..., StageResult] = run_stage,
) -> None:
    """What a stage command does once its config is ready: run the stage from ``input``
    (none: from nothing) into ``output`` under the run's budget, print the summary and what
    was spent. ``run`` is an executor's ``run_stage`` where the stage can scale out."""
    mode = mode_for(quiet)
    budget = budget_for(config, max_cost, spend_ledger_for(output))
    result = run(
        stage_named(name),
        config,
        input if input is not None else os.devnull,
        output,
        rejected_path=rejected_path_for(output, rejected),
        progress_mode=mode,
        budget=budget,
    )
    if input is not None:
        warn_if_empty(result, input, output, mode)
    summary([(result, False)], mode)
    spend_summary(budget, mode)
