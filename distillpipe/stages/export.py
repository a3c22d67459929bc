"""The ``export`` stage: records → a training dataset in a directory.

    <dir>/train.jsonl, validation.jsonl     rows in the configured format
    <dir>/<split>.logprobs.jsonl            the teacher's logprobs, line-aligned (optional)
    <dir>/data/<split>-00000-of-00001.parquet, <dir>/hf/   Parquet, save_to_disk (optional)
    <dir>/README.md                         the dataset card
    <dir>/export.json                       what was written, and what was skipped and why

The export is a pure function of the input records and the config: the order
comes from ``config.seed`` and record ids, never from the clock. Under
``distillpipe run`` the directory is ``<run_dir>/export/`` and the stage's
JSONL output holds every exported row (train, then validation).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import orjson

from distillpipe.config import Config, ExportConfig
from distillpipe.conversations import assistant_responses, is_conversation
from distillpipe.errors import InputError
from distillpipe.exporters import card, hf
from distillpipe.exporters.formats import exporter_named
from distillpipe.exporters.logprobs import sidecar_row
from distillpipe.exporters.multi_turn import NO_ANSWER, conversation_messages, no_row
from distillpipe.exporters.reasoning import has_trace, with_reasoning
from distillpipe.exporters.select import (
    pick_best_per_teacher,
    pick_preference,
    pick_sft,
    with_reference,
)
from distillpipe.exporters.structured import NO_PARSED, schemas_of, with_json_text
from distillpipe.io import atomic_write_bytes, write_jsonl
from distillpipe.manifest import MANIFEST
from distillpipe.panel_stats import WinCounter
from distillpipe.stages.base import Record, StageContext
from distillpipe.stages.generate import system_prompt_for
from distillpipe.temps import create_temp_dir

SUMMARY = "export.json"


@dataclass
class Exported:
    """The rows of each split, their logprobs sidecars and what was skipped."""

    records_in: int = 0
    splits: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    sidecars: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    skipped: Counter[str] = field(default_factory=Counter)
    teacher_models: list[str] = field(default_factory=list)
    reference_rows: int = 0
    traced_rows: int = 0  # rows from a sample with a reasoning trace
    schemas: list[Any] = field(default_factory=list)  # records' own schemas, in order
    wins: WinCounter = field(default_factory=WinCounter)  # a panel's chosen samples by teacher

    def rows(self) -> Iterator[dict[str, Any]]:
        for rows in self.splits.values():
            yield from rows

    def stats(self, section: ExportConfig) -> dict[str, Any]:
        stats = {
            "format": section.format,
            "records": self.records_in,
            "rows": {split: len(rows) for split, rows in self.splits.items()},
            "skipped": dict(sorted(self.skipped.items())),
        }
        if section.include_reference:
            stats["reference_rows"] = self.reference_rows
        if self.traced_rows:
            stats["traced_rows"] = self.traced_rows
            stats["reasoning"] = section.reasoning
        if self.wins.answered:
            stats["teacher_wins"] = self.wins.as_dict()
        return stats


def shuffle_key(seed: int, record: Record) -> bytes:
    return hashlib.sha256(f"{seed}:export:{record['id']}".encode()).digest()


def validation_size(section: ExportConfig, total: int) -> int:
    value = section.validation
    count = round(value * total) if isinstance(value, float) and value < 1 else int(value)
    return min(count, total)


@dataclass(slots=True)
class _Kept:
    """One exported record, reduced to its rows: full records are not held in memory."""

    key: bytes
    position: int
    rows: list[dict[str, Any]]
    sidecars: list[dict[str, Any]]


def build_export(records: Iterable[Record], config: Config) -> Exported:
    """Select, order, cap and split: everything but writing. One pass over the records."""
    section = config.export_section
    exporter = exporter_named(section.format)
    result = Exported()
    models: set[str] = set()
    kept: list[_Kept] = []
    for position, record in enumerate(records):
        result.records_in += 1
        models.update(r.get("model") or "" for r in record.get("responses") or [])
        if is_conversation(record):  # its system prompt is in its messages
            models.update(r.get("model") or "" for r in assistant_responses(record))
            messages = conversation_messages(record, section.system_prompt)
            row = exporter.conversation_row(messages, section) if messages else None
            if row is None:
                result.skipped[NO_ANSWER if not messages else no_row(section.format)] += 1
                continue
            key = shuffle_key(config.seed, record) if section.shuffle else b""
            sidecars = [sidecar_row(record, None)] if section.logprobs else []
            kept.append(_Kept(key, position, [row], sidecars))
            continue
        system = system_prompt_for(record, config) if section.system_prompt else None
        result.wins.add(record)
        if exporter.pairs:
            picked, reason = pick_preference(record, system)
        elif section.responses == "best-per-teacher":
            picked, reason = pick_best_per_teacher(record, system)
        else:
            picked, reason = pick_sft(record, system, section.responses == "all")
        if not exporter.pairs and section.include_reference:
            picked, reason = with_reference(
                record, system, (picked, reason), section.reference_fields, section.reference_as
            )
            result.reference_rows += sum(p.sample is None for p in picked)
        if reason is not None:
            result.skipped[reason] += 1
            continue
        picked = with_json_text(record, picked, section.json_style)
        if exporter.needs_parsed:
            result.skipped[NO_PARSED] += sum(not p.example.structured for p in picked)
            picked = [p for p in picked if p.example.structured]
            if not picked:
                continue
        if record.get("schema") is not None and record["schema"] not in result.schemas:
            result.schemas.append(record["schema"])
        picked = with_reasoning(record, picked, section.reasoning, section.reasoning_tags)
        result.traced_rows += sum(has_trace(record, p.sample) for p in picked)
        kept.append(
            _Kept(
                shuffle_key(config.seed, record) if section.shuffle else b"",
                position,
                [exporter.row(p.example, record, section) for p in picked],
                [sidecar_row(record, p.sample) for p in picked] if section.logprobs else [],
            )
        )
    result.teacher_models = sorted(models - {""})
    kept.sort(key=lambda item: (item.key, item.position))
    if section.max_records is not None and len(kept) > section.max_records:
        result.skipped["over max_records"] += len(kept) - section.max_records
        del kept[section.max_records :]
    n_validation = validation_size(section, len(kept))
    parts = {"train": kept[: len(kept) - n_validation]}
    if section.validation:
        parts["validation"] = kept[len(kept) - n_validation :]
    for split, items in parts.items():
        result.splits[split] = [row for item in items for row in item.rows]
        result.sidecars[split] = [row for item in items for row in item.sidecars]
    return result


def write_export(
    exported: Exported, config: Config, target: Path, manifest: dict[str, Any] | None
) -> list[str]:
    """Write the export directory next to ``target`` and swap it into place."""
    section = config.export_section
    lock, staging = create_temp_dir(target)  # locked while it fills: see temps.py
    try:
        files = _write_files(exported, config, section, staging, manifest)
        _replace_dir(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        os.close(lock)
    if section.push_to_hub:
        hf.push_to_hub(exported.splits, section.push_to_hub, section.private)
    return files


def _write_files(
    exported: Exported,
    config: Config,
    section: ExportConfig,
    directory: Path,
    manifest: dict[str, Any] | None,
) -> list[str]:
    files: list[tuple[str, int | None]] = []
    for split, rows in exported.splits.items():
        write_jsonl(directory / f"{split}.jsonl", rows)
        files.append((f"{split}.jsonl", len(rows)))
        if section.logprobs and not exporter_named(section.format).pairs:
            write_jsonl(directory / f"{split}.logprobs.jsonl", exported.sidecars[split])
            files.append((f"{split}.logprobs.jsonl", len(rows)))
    parquet: list[tuple[str, str]] = []
    if section.parquet or section.save_to_disk:
        with _quiet_datasets():
            if section.parquet:
                parquet = hf.write_parquet(exported.splits, directory)
                files += [(path, None) for _, path in parquet]
            if section.save_to_disk:
                files.append((hf.save_to_disk(exported.splits, directory) + "/", None))
    if section.dataset_card:
        facts = card.CardFacts(
            records_in=exported.records_in,
            splits={split: len(rows) for split, rows in exported.splits.items()},
            skipped=dict(exported.skipped),
            files=files,
            teacher_models=exported.teacher_models,
            parquet_files=parquet,
            manifest=manifest,
            traced_rows=exported.traced_rows,
            schemas=schemas_of(exported.schemas, config.generate.response_format),
            teacher_wins=exported.wins.as_dict(),
        )
        rendered = card.render_card(config, section.format, facts)
        atomic_write_bytes(directory / "README.md", rendered.encode())
        files.append(("README.md", None))
    summary = {**exported.stats(section), "files": [name for name, _ in files]}
    atomic_write_bytes(directory / SUMMARY, orjson.dumps(summary, option=orjson.OPT_INDENT_2))
    return [name for name, _ in files]


@contextlib.contextmanager
def _quiet_datasets() -> Iterator[None]:
    """No progress bars from ``datasets`` while it writes (stderr is ours)."""
    import datasets

    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()


def _replace_dir(staging: Path, target: Path) -> None:
    """Only an empty folder or an earlier export is replaced; anything else is the user's."""
    if target.exists():
        if not target.is_dir() or not _holds_only_an_export(target):
            raise InputError(
                f"{target}: exists and is not a distillpipe export; choose another output"
            )
        shutil.rmtree(target)
    staging.rename(target)


def _holds_only_an_export(directory: Path) -> bool:
    """Empty, or nothing but the files an earlier export's summary lists."""
    entries = {entry.name for entry in directory.iterdir()}
    if not entries:
        return True
    try:
        summary = orjson.loads((directory / SUMMARY).read_bytes())
        written = {str(name).split("/")[0] for name in summary["files"]}
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError):
        return False
    return entries <= written | {SUMMARY}


def read_manifest(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / MANIFEST
    return orjson.loads(path.read_bytes()) if path.is_file() else None


class ExportStage:
    name: ClassVar[str] = "export"
    position: ClassVar[int] = 500
    section: ClassVar[str] = "export"
    config_sections: ClassVar[tuple[str, ...]] = ("seed", "teacher", "generate", "export")
    prompt_folders: ClassVar[tuple[str, ...]] = ("system",)  # the system prompt it adds

    def run(self, records: Iterator[Record], ctx: StageContext) -> Iterator[Record]:
        config = ctx.config
        exported = build_export(records, config)
        if ctx.output_path is not None:
            run_dir = ctx.output_path.parent
            directory = run_dir / ctx.output_path.name.removesuffix(".jsonl")
            write_export(exported, config, directory, read_manifest(run_dir))
        ctx.stats["export"] = exported.stats(config.export_section)
        yield from exported.rows()
