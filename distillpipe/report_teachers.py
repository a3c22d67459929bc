"""The report's section on a panel of teachers (``teachers:``): each member's calls,
cache hits, tokens, cost, latency and failures over the run, and its win rate (how
often its sample was the chosen one), with a plot of the win rates.

The wins are the export's (``export.json`` stats in the manifest); a run without an
export stage counts them in its last stage's output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from distillpipe import plots
from distillpipe.panel_stats import run_member_stats, teacher_rows, win_counts


def run_wins(run_dir: Path, manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    stages = manifest.get("stages") or {}
    export = ((stages.get("export") or {}).get("stats") or {}).get("export") or {}
    if "teacher_wins" in export:
        return export["teacher_wins"]
    outputs = [entry.get("output") for entry in stages.values() if entry.get("output")]
    last = run_dir / outputs[-1] if outputs else None
    if last is None or not last.is_file():
        return {}
    with last.open("rb") as stream:
        return win_counts(orjson.loads(line) for line in stream if line.strip())


def panel_rows(run_dir: Path, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per panel member; none for a run with a single teacher."""
    members = (manifest.get("config") or {}).get("teachers") or []
    if not members:
        return []
    blocks = [{**member["teacher"], "name": member["name"]} for member in members]
    return teacher_rows(blocks, run_member_stats(manifest), run_wins(run_dir, manifest))


def win_rate_figure(rows: list[dict[str, Any]]) -> dict[str, str] | None:
    if not rows:
        return None
    svg = plots.bars(
        [row["name"] for row in rows],
        [100 * float(row["win_rate"]) for row in rows],
        "Win rate per teacher (its sample chosen)",
        "% of records",
    )
    return {"id": "teacher-wins", "title": "Win rate per teacher", "svg": svg}
