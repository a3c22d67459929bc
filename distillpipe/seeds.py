"""Seed tasks from JSONL, CSV, plain text or a Hugging Face dataset, as records.

- JSONL in Self-Instruct's ``seed_tasks.jsonl`` shape (``instruction``,
  ``instances: [{input, output}]``, ``is_classification``) or the flat
  ``{instruction, input?, output?}`` shape, line by line;
- CSV with a header row and a column mapping;
- plain text, one instruction per line (blank lines and ``#`` comments skipped);
- a Hugging Face dataset: ``hf:<id or path>``, a folder written by
  ``save_to_disk``, or a folder of data files, via ``datasets``.

Every seed becomes a record whose ``meta`` keeps what Self-Instruct needs
beyond the instruction (``output``, ``is_classification``); a ``reference``
(a known answer or tests, for the reference and execution filters) is kept
as the record's own ``reference``. A malformed seed
raises an InputError naming ``file:line`` (or ``dataset[split] row N``).
``source_hash`` is what ``distillpipe run``'s manifest keeps of such an input.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from distillpipe.errors import InputError, MissingDependencyError
from distillpipe.io import STDIO, file_hash, numbered_objects, source_name, tree_hash
from distillpipe.records import Record, content_hash, new_record

SeedFormat = Literal["auto", "jsonl", "csv", "txt", "hf"]
HF_PREFIX = "hf:"


class StrictModel(BaseModel):  # config.py imports this module: no import back
    model_config = ConfigDict(extra="forbid")


class SeedColumns(StrictModel):
    """Which source column holds each seed field (CSV, flat JSONL, HF datasets)."""

    instruction: str = "instruction"
    input: str | None = "input"
    output: str | None = "output"
    is_classification: str | None = "is_classification"


class SeedSourceConfig(StrictModel):
    format: SeedFormat = Field("auto", description="auto: from the path (hf: prefix, suffix)")
    columns: SeedColumns = Field(default_factory=SeedColumns)
    split: str = Field("train", description="the split of a Hugging Face dataset")
    subset: str | None = Field(None, description="the configuration name of a HF dataset")


def detect_format(path: str) -> SeedFormat:
    if path.startswith(HF_PREFIX) or Path(path).is_dir():
        return "hf"
    name = path.lower().removesuffix(".gz")
    if name.endswith((".jsonl", ".json", ".ndjson")) or path == STDIO:
        return "jsonl"
    if name.endswith(".csv"):
        return "csv"
    if name.endswith(".txt"):
        return "txt"
    raise InputError(
        f"{path}: cannot tell the seed format from the name; "
        "set self_instruct.seeds.format to jsonl, csv, txt or hf"
    )


def load_seeds(path: str | Path, source: SeedSourceConfig | None = None) -> Iterator[Record]:
    """Yield one record per seed task, lazily, in file order."""
    source = source or SeedSourceConfig()
    path = str(path)
    fmt = detect_format(path) if source.format == "auto" else source.format
    loader = {"jsonl": _jsonl, "csv": _csv, "txt": _txt, "hf": _hf}[fmt]
    yield from loader(path, source)


def seed_record(row: Mapping[str, Any], columns: SeedColumns, where: str) -> Record:
    """One seed in either shape, validated; ``where`` names it in errors."""
    instruction = row.get(columns.instruction)
    if not isinstance(instruction, str) or not instruction.strip():
        raise InputError(f"{where}: seed has no {columns.instruction!r} text")
    text_input, output = "", None
    instances = row.get("instances")
    if instances is not None:
        if not isinstance(instances, list) or not all(isinstance(i, dict) for i in instances):
            raise InputError(f"{where}: 'instances' must be a list of {{input, output}} objects")
        if instances:
            text_input = _text(instances[0].get("input"), where, "instances[0].input")
            output = _text(instances[0].get("output"), where, "instances[0].output")
    else:
        if columns.input:
            text_input = _text(row.get(columns.input), where, columns.input)
        if columns.output:
            output = _text(row.get(columns.output), where, columns.output) or None
    meta: dict[str, Any] = dict(row["meta"]) if isinstance(row.get("meta"), dict) else {}
    if output:
        meta["output"] = output
    flag = row.get(columns.is_classification) if columns.is_classification else None
    if flag is not None:
        meta["is_classification"] = _flag(flag, where, columns.is_classification or "")
    system = row.get("system") if isinstance(row.get("system"), str) else None
    record = new_record(
        instruction.strip(),
        input=text_input.strip() or None,
        system=system,
        origin={"stage": "input"},
        meta=meta or None,
    )
    if row.get("reference") not in (None, ""):
        record["reference"] = row["reference"]  # a known answer or tests, for verification
    return record


def _text(value: Any, where: str, field: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise InputError(f"{where}: {field!r} must be text, got {type(value).__name__}")


def _flag(value: Any, where: str, field: str) -> bool:
    if isinstance(value, bool):
        return value
    lowered = str(value).strip().lower()
    if lowered in ("true", "yes", "1"):
        return True
    if lowered in ("false", "no", "0", ""):
        return False
    raise InputError(f"{where}: {field!r} must be true or false, got {value!r}")


def _jsonl(path: str, source: SeedSourceConfig) -> Iterator[Record]:
    name = source_name(path)
    for lineno, row in numbered_objects(path):
        yield seed_record(row, source.columns, f"{name}:{lineno}")


def _csv(path: str, source: SeedSourceConfig) -> Iterator[Record]:
    if not Path(path).is_file():
        raise InputError(f"{path}: no such file")
    with open(path, newline="", encoding="utf-8") as stream:
        reader = csv.DictReader(stream)
        header = reader.fieldnames or []
        if source.columns.instruction not in header:
            raise InputError(
                f"{path}:1: no column {source.columns.instruction!r} for the instruction "
                f"(columns: {', '.join(header) or 'none'}); set self_instruct.seeds.columns"
            )
        for row in reader:
            if None in row:
                raise InputError(f"{path}:{reader.line_num}: more fields than header columns")
            if not any((value or "").strip() for value in row.values()):
                continue
            yield seed_record(row, source.columns, f"{path}:{reader.line_num}")


def _txt(path: str, source: SeedSourceConfig) -> Iterator[Record]:
    if not Path(path).is_file():
        raise InputError(f"{path}: no such file")
    with open(path, encoding="utf-8") as stream:
        for lineno, line in enumerate(stream, start=1):
            text = line.strip()
            if text and not text.startswith("#"):
                yield seed_record({"instruction": text}, SeedColumns(), f"{path}:{lineno}")


def _hf(path: str, source: SeedSourceConfig) -> Iterator[Record]:
    target = path.removeprefix(HF_PREFIX)
    dataset = _load_dataset(target, source)
    label = f"{target}[{source.split}]"
    columns = set(dataset.column_names)
    if source.columns.instruction not in columns:
        raise InputError(
            f"{label}: no column {source.columns.instruction!r} for the instruction "
            f"(columns: {', '.join(sorted(columns))}); set self_instruct.seeds.columns"
        )
    for number, row in enumerate(dataset, start=1):
        yield seed_record(row, source.columns, f"{label} row {number}")


def _load_dataset(target: str, source: SeedSourceConfig) -> Any:
    """The split a ``save_to_disk`` folder, a folder of data files or a Hub id holds."""
    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets is a core dependency
        raise MissingDependencyError("loading seeds from a Hugging Face dataset", "hf") from None
    try:
        if (Path(target) / "state.json").exists() or (Path(target) / "dataset_dict.json").exists():
            loaded = datasets.load_from_disk(target)
            return loaded[source.split] if isinstance(loaded, datasets.DatasetDict) else loaded
        return datasets.load_dataset(target, source.subset, split=source.split)
    except KeyError:
        raise InputError(f"{target}: the dataset has no split {source.split!r}") from None
    except (FileNotFoundError, ValueError, datasets.exceptions.DatasetNotFoundError) as exc:
        raise InputError(f"{target}: cannot load the dataset: {exc}") from None


def is_seed_source(path: str | Path) -> bool:
    """An input only the seed loaders read: a dataset, a CSV or a text file (not JSONL)."""
    try:
        return detect_format(str(path)) != "jsonl"
    except InputError:  # a name of no known kind is read as records JSONL, as it always was
        return False


def source_hash(path: str | Path, source: SeedSourceConfig) -> str:
    """A hash of what the seed loaders read from ``path`` with these settings, for the manifest.

    A local file or folder (``hf:`` or not) is hashed by content, so a folder
    moved elsewhere still matches and a changed file does not; a Hub id by the
    fingerprint ``datasets`` gives the split it loads from the local HF cache
    (it follows the dataset's revision and builder config) and by the id.
    """
    target = str(path).removeprefix(HF_PREFIX)
    if Path(target).is_dir():
        content: dict[str, str] = {"tree": tree_hash(target)}
    elif Path(target).is_file():
        content = {"file": file_hash(target)}
    elif str(path).startswith(HF_PREFIX):
        dataset = _load_dataset(target, source)
        content = {"hub": target, "fingerprint": dataset._fingerprint}
    else:
        raise InputError(f"{path}: no such file")
    return content_hash({**content, "seeds": source.model_dump(mode="json")})
