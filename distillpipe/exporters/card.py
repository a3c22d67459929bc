"""The dataset card: README.md in the export directory (config, teacher, counts, terms)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from distillpipe import templates
from distillpipe.config import Config
from distillpipe.panel_stats import run_member_stats, teacher_rows
from distillpipe.structured import json_text


@dataclass
class CardFacts:
    records_in: int
    splits: dict[str, int]
    skipped: dict[str, int]
    files: list[tuple[str, int | None]]
    teacher_models: list[str]
    parquet_files: list[tuple[str, str]] = field(default_factory=list)
    manifest: dict[str, Any] | None = None
    traced_rows: int = 0  # rows from a sample with a reasoning trace
    schemas: list[Any] = field(default_factory=list)  # the response formats answers followed
    teacher_wins: dict[str, dict[str, Any]] = field(default_factory=dict)  # a panel's


def stage_rows(manifest: dict[str, Any] | None) -> list[dict[str, Any]]:
    rows = []
    for name, entry in ((manifest or {}).get("stages") or {}).items():
        rejected = sum((entry.get("stats") or {}).get("rejected", {}).values())
        rows.append(
            {
                "name": name,
                "records_in": entry.get("records_in", ""),
                "records_out": entry.get("records_out", ""),
                "rejected": rejected,
            }
        )
    return rows


def funnel_rows(manifest: dict[str, Any] | None) -> list[dict[str, Any]]:
    rows = []
    for entry in ((manifest or {}).get("stages") or {}).values():
        for name, stats in ((entry.get("stats") or {}).get("filters") or {}).items():
            if isinstance(stats, dict):
                rows.append({"name": name, **{k: stats.get(k, "") for k in _FUNNEL_KEYS}})
    return rows


_FUNNEL_KEYS = ("seen", "kept", "rejected")


def panel_rows(config: Config, facts: CardFacts) -> list[dict[str, Any]]:
    """A panel's per-teacher accounting and win rates (none for a single teacher)."""
    if config.teachers is None:
        return []
    members = config.public_dump().get("teachers") or []
    blocks = [{**m["teacher"], "name": m["name"]} for m in members]
    return teacher_rows(blocks, run_member_stats(facts.manifest), facts.teacher_wins)


def render_card(config: Config, export_format: str, facts: CardFacts) -> str:
    models = facts.teacher_models or [config.teacher.model]
    return templates.render(
        "dataset_card.md.jinja",
        name=config.name,
        teacher_models=models,
        teacher_backend=config.teacher.backend,
        format=export_format,
        files=facts.files,
        records_in=facts.records_in,
        rows_out=sum(facts.splits.values()),
        split_counts=list(facts.splits.items()),
        skipped=sorted(facts.skipped.items()),
        stages=stage_rows(facts.manifest),
        funnel=funnel_rows(facts.manifest),
        parquet_files=facts.parquet_files,
        traced_rows=facts.traced_rows,
        schemas=[json_text(schema, "pretty") for schema in facts.schemas],
        json_style=config.export_section.json_style,
        panel=panel_rows(config, facts),
        reasoning=config.export_section.reasoning,
        reasoning_tags=config.export_section.reasoning_tags,
        config_yaml=yaml.safe_dump(config.public_dump(), sort_keys=False),
    )
