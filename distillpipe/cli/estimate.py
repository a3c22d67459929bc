"""``distillpipe estimate CONFIG``: the resume plan of ``run``, without sending anything."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import orjson
import typer

from distillpipe.cli.common import SetOption, load
from distillpipe.cli.run import run_input
from distillpipe.estimate import Plan, StagePlan, plan_run

AT_MOST, ABOUT = "≤ ", "~ "
COLUMNS = ("stage", "run", "cached", "to send", "prompt tokens", "output tokens", "cost (USD)")


def estimate(
    config: Annotated[Path, typer.Argument(help="The YAML config.")],
    input: Annotated[
        Path | None, typer.Option("--input", "-i", help="Records to start from; default: input.")
    ] = None,
    set: SetOption = None,
    run_dir: Annotated[
        Path | None, typer.Option(help="Default: <config.run_dir>/<config.name>.")
    ] = None,
    from_stage: Annotated[
        str | None, typer.Option("--from", help="As run --from: redo from this stage on.")
    ] = None,
    to_stage: Annotated[str | None, typer.Option("--to", help="As run --to.")] = None,
    json: Annotated[bool, typer.Option("--json", help="The plan as JSON.")] = False,
) -> None:
    """Per stage, the teacher calls cached and to send, their tokens and projected cost.

    Stages finished in the run directory send nothing; the others are replayed
    against the cache. Nothing is sent, started or written.
    """
    resolved = load(config, set)
    source = str(input) if input is not None else run_input(resolved, config)
    target = run_dir or Path(resolved.run_dir) / resolved.name
    plan = plan_run(resolved, target, source, from_stage=from_stage, to_stage=to_stage)
    typer.echo(_as_json(plan) if json else render(plan, target))


def render(plan: Plan, run_dir: Path) -> str:
    done = [stage.stage for stage in plan.stages if stage.done]
    lines = [
        f"teacher        {plan.teacher}{' (batch)' if plan.batch else ''}",
        f"price          {_price_line(plan)}",
        f"prompt tokens  {plan.tokenizer}",
        f"run directory  {run_dir}" + (f" ({', '.join(done)} done)" if done else ""),
        "",
    ]
    rows = [COLUMNS, *(_cells(stage) for stage in plan.stages)]
    if len(plan.stages) > 1:
        rows.append(_cells(plan.total))
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    for row in rows:
        cells = [
            cell.ljust(width) if i < 2 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    lines += [
        "",
        f"{AT_MOST.strip()} at most: answers not yet cached decide how many calls follow, so "
        "the configured upper bound is counted; output at max_tokens.",
        f"{ABOUT.strip()} about: some prompts hold stand-ins for answers not yet cached.",
        "Nothing was sent.",
    ]
    return "\n".join(lines)


def _price_line(plan: Plan) -> str:
    price = plan.price
    if price is None:
        return plan.price_source
    if price.input == price.output == 0.0:
        return f"free ({plan.price_source})"
    return f"{price.input:g} in, {price.output:g} out USD per 1M tokens ({plan.price_source})"


def _cells(stage: StagePlan) -> tuple[str, ...]:
    status = "" if stage.stage == "total" else "done" if stage.done else "runs"
    sends = stage.calls_to_send > 0
    bound = AT_MOST if sends or not stage.exact else ""
    cost = "?" if stage.cost_usd is None else f"{bound}{stage.cost_usd:,.4f}"
    return (
        stage.stage,
        status,
        f"{stage.calls_cached:,}",
        f"{'' if stage.exact else AT_MOST}{stage.calls_to_send:,}",
        f"{'' if stage.tokens_exact else ABOUT}{stage.prompt_tokens:,}",
        f"{AT_MOST if sends else ''}{stage.output_tokens:,}",
        cost,
    )


def _as_json(plan: Plan) -> str:
    data = {
        "teacher": plan.teacher,
        "batch": plan.batch,
        "price": asdict(plan.price) if plan.price is not None else None,
        "price_source": plan.price_source,
        "tokenizer": plan.tokenizer,
        "stages": [asdict(stage) for stage in plan.stages],
        "total": asdict(plan.total),
    }
    return orjson.dumps(data, option=orjson.OPT_INDENT_2).decode()
