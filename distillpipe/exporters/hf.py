"""Hugging Face outputs: ``save_to_disk``, Parquet files in the Hub layout, ``push_to_hub``.

Datasets get a fingerprint hashed from their rows (not a random one), so the
same rows always give the same files on disk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from distillpipe.errors import DistillpipeError
from distillpipe.records import content_hash

Rows = dict[str, list[dict[str, Any]]]


def dataset_dict(splits: Rows) -> Any:
    import pyarrow as pa
    from datasets import Dataset, DatasetDict

    built = {}
    for split, rows in splits.items():
        table = pa.Table.from_pylist(rows)
        fingerprint = content_hash(rows).removeprefix("sha256:")[:16]
        built[split] = Dataset(table, fingerprint=fingerprint)
    return DatasetDict(built)


def parquet_path(split: str) -> str:
    return f"data/{split}-00000-of-00001.parquet"


def write_parquet(splits: Rows, directory: Path) -> list[tuple[str, str]]:
    """One Parquet file per split; returns (split, path relative to ``directory``)."""
    written = []
    for split, dataset in dataset_dict(splits).items():
        target = directory / parquet_path(split)
        target.parent.mkdir(parents=True, exist_ok=True)
        dataset.to_parquet(str(target))
        written.append((split, parquet_path(split)))
    return written


def save_to_disk(splits: Rows, directory: Path) -> str:
    dataset_dict(splits).save_to_disk(str(directory / "hf"))
    return "hf"


def push_to_hub(splits: Rows, repo_id: str, private: bool) -> None:
    """Needs network and a token (HF_TOKEN); not exercised by the offline tests."""
    try:
        dataset_dict(splits).push_to_hub(repo_id, private=private)
    except Exception as exc:  # hub, network and auth errors alike: one line, files kept
        raise DistillpipeError(
            f"export.push_to_hub {repo_id}: {type(exc).__name__}: {exc}".splitlines()[0]
        ) from exc
