"""The HTML report of a run directory: one self-contained file, plots inline as SVG.

Everything comes from ``manifest.json`` and the stage files beside it (see
``run_data``), so a stage or filter added later shows up without changes here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from distillpipe import plots, templates
from distillpipe.io import atomic_write_bytes
from distillpipe.report_teachers import panel_rows, win_rate_figure
from distillpipe.review.agreement import summarise_run
from distillpipe.run_data import RunData, StageView, collect


def funnel(stages: list[StageView]) -> list[tuple[str, int]]:
    rows: list[tuple[str, int]] = []
    if stages:
        rows.append(("input", int(stages[0].entry.get("records_in", 0))))
    for stage in stages:
        for name, stats in (stage.stats.get("filters") or {}).items():
            if isinstance(stats, dict) and "kept" in stats:
                rows.append((f"{stage.name} · {name}", int(stats["kept"])))
        rows.append((stage.name, int(stage.entry.get("records_out", 0))))
    return rows


def stage_rows(stages: list[StageView]) -> list[dict[str, Any]]:
    rows = []
    for stage in stages:
        teacher, seconds = stage.teacher, float(stage.entry.get("seconds") or 0)
        completion = teacher.get("completion_tokens", 0)
        teacher_seconds = teacher.get("teacher_seconds") or 0
        rows.append(
            {
                "name": stage.name,
                "records_in": stage.entry.get("records_in", 0),
                "records_out": stage.entry.get("records_out", 0),
                "rejected": sum((stage.stats.get("rejected") or {}).values()),
                "seconds": seconds,
                "prompt_tokens": teacher.get("prompt_tokens", 0),
                "completion_tokens": completion,
                "teacher_calls": teacher.get("teacher_calls", 0),
                "cache_hits": teacher.get("cache_hits", 0),
                "tokens_per_second": completion / teacher_seconds if teacher_seconds else None,
                "records_per_second": stage.entry.get("records_out", 0) / seconds
                if seconds
                else None,
                "cost": teacher.get("cost_usd"),  # DispatchStats; no teacher: no cost
            }
        )
    return rows


def first_and_last(per_stage: dict[str, list[int]]) -> dict[str, list[int]]:
    """The first stage that has the values and the last: what the pipeline kept."""
    names = list(per_stage)
    return {name: per_stage[name] for name in dict.fromkeys((names[0], names[-1]))}


def figures(data: RunData) -> list[dict[str, str]]:
    """Every plot the run has data for, as ``{id, title, svg}``."""
    out = []

    def add(plot_id: str, title: str, svg: str) -> None:
        out.append({"id": plot_id, "title": title, "svg": svg})

    if rows := funnel(data.stages):
        labels, counts = zip(*rows, strict=True)
        add(
            "funnel",
            "Funnel",
            plots.bars(labels, counts, "Records per stage and filter", "records"),
        )
    if data.instruction_words:
        add(
            "instruction-lengths",
            "Instruction lengths",
            plots.histogram(first_and_last(data.instruction_words), "Instruction length", "words"),
        )
    if data.response_tokens:
        add(
            "response-lengths",
            "Response lengths",
            plots.histogram(
                first_and_last(data.response_tokens), "Response length", "completion tokens"
            ),
        )
    if data.trace_tokens:
        last = list(data.trace_tokens)[-1]  # what the pipeline kept
        add(
            "trace-lengths",
            "Reasoning trace lengths",
            plots.histogram(
                {"trace": data.trace_tokens[last], "answer": data.answer_tokens[last]},
                f"Trace and answer lengths of the traced responses ({last})",
                "tokens",
            ),
        )
    for view in data.filters.values():
        if view.passed or view.rejected or view.rejected_elsewhere:
            add(
                f"scores-{view.name}",
                f"Scores: {view.name}",
                plots.histogram(
                    {
                        "kept": list(view.passed.values()),
                        "rejected": list(view.rejected.values()),
                        "rejected by another filter": list(view.rejected_elsewhere.values()),
                    },
                    f"{view.name} scores",
                    "score",
                    view.thresholds,
                ),
            )
    if data.depths:
        depths = sorted(data.depths)
        add(
            "evol-depth",
            "Evol-Instruct depth",
            plots.bars(
                [f"round {d}" for d in depths],
                [data.depths[d] for d in depths],
                "Records per evolution round",
                "records",
            ),
        )
    if data.operators:
        names = sorted(data.operators, key=lambda n: (-data.operators[n], n))
        add(
            "evol-operators",
            "Evol-Instruct operators",
            plots.bars(
                names, [data.operators[n] for n in names], "Records per operator", "records"
            ),
        )
    teacher_stages = [
        row
        for row in stage_rows(data.stages)
        if row["teacher_calls"] or row["prompt_tokens"] or row["completion_tokens"]
    ]
    if teacher_stages:
        add(
            "tokens",
            "Tokens per stage",
            plots.stacked_bars(
                [row["name"] for row in teacher_stages],
                {
                    "prompt": [row["prompt_tokens"] for row in teacher_stages],
                    "completion": [row["completion_tokens"] for row in teacher_stages],
                },
                "Teacher tokens per stage",
            ),
        )
    if data.topic_tree is not None and data.topic_tree.roots:
        subjects = data.topic_tree.roots
        add(
            "topic-subjects",
            "Questions per subject",
            plots.bars(
                [s.name for s in subjects],
                [s.total_questions for s in subjects],
                "Topic questions per subject (topic_tree.json)",
                "questions",
            ),
        )
    if data.personas:
        names = sorted(data.personas, key=lambda n: (-data.personas[n], n))
        add(
            "personas",
            "Questions per persona",
            plots.bars(names, [data.personas[n] for n in names], "Records per persona", "records"),
        )
    return out


def tree_rows(data: RunData) -> list[dict[str, Any]]:
    """The topic tree depth first, one row per node with its branch's counts."""
    if data.topic_tree is None:
        return []
    return [
        {"name": row.path[-1], "path": " > ".join(row.path), "depth": row.depth,
         "questions": row.questions, "leaves": row.leaves, "dropped": row.dropped}
        for row in data.topic_tree.branch_counts()
    ]  # fmt: skip


def persona_rows(data: RunData) -> list[dict[str, Any]]:
    return [
        {"persona": name, "records": count}
        for name, count in sorted(data.personas.items(), key=lambda item: (-item[1], item[0]))
    ]


def render(run_dir: Path) -> str:
    data = collect(run_dir)
    config = data.manifest.get("config") or {}
    panel = panel_rows(run_dir, data.manifest)
    wins = win_rate_figure(panel)
    return templates.render(
        "report.html.jinja",
        name=data.manifest.get("name", run_dir.name),
        teacher=config.get("teacher") or {},
        stages=stage_rows(data.stages),
        figures=figures(data) + ([wins] if wins else []),
        panel=panel,
        filters=list(data.filters.values()),
        has_evolution=bool(data.depths or data.operators),
        tree=tree_rows(data),
        domain=data.topic_tree.domain if data.topic_tree is not None else None,
        personas=persona_rows(data),
        config_json=orjson.dumps(config, option=orjson.OPT_INDENT_2).decode(),
        review=summarise_run(run_dir, data.manifest, data.stages),
    )


def write_report(run_dir: Path, output: Path | None = None) -> Path:
    target = output or run_dir / "report.html"
    atomic_write_bytes(target, render(run_dir).encode())
    return target
