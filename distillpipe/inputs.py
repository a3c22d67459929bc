"""What a stage reads, and the hash the manifest keeps of it.

A stage reads records JSONL; a stage with its own ``load_input`` (``seed``)
reads through that. Any other input that ``distillpipe seed`` takes — an
``hf:<id or path>`` dataset, a ``save_to_disk`` folder or a folder of data
files, a CSV or a text file — goes through the same seed loaders (with
``self_instruct.seeds``' split, subset and columns), so a run without a seed
stage can start ``generate`` from a Hugging Face dataset.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from distillpipe.config import Config
from distillpipe.io import STDIO, file_hash, read_records
from distillpipe.prompts import prompts_for
from distillpipe.records import Record, content_hash
from distillpipe.seeds import SeedSourceConfig, is_seed_source, load_seeds, source_hash
from distillpipe.stages.base import Stage


def stage_records(stage: object, path: str | Path, config: Config) -> Iterator[Record]:
    load_input = getattr(stage, "load_input", None)  # a reader that needs the config
    if load_input is not None:
        return load_input(path, config)
    if str(path) != STDIO and is_seed_source(path):
        return load_seeds(path, _seed_settings(config))
    return getattr(stage, "read_input", read_records)(path)


def input_hash(stage: object, path: str | Path, config: Config) -> str:
    """A records file's bytes; a dataset's content (or Hub fingerprint) and how it is read.

    A CSV or text file that a stage converts through the seed loaders also
    hashes the loader settings: they are no part of that stage's config hash.
    """
    if str(path) == os.devnull:  # a run whose first stage makes its own records (magpie)
        return content_hash(None)
    converted = not hasattr(stage, "load_input") and is_seed_source(path)
    if Path(path).is_file() and not converted:
        return file_hash(path)
    return source_hash(path, _seed_settings(config))


def _seed_settings(config: Config) -> SeedSourceConfig:
    return config.self_instruct.seeds if config.self_instruct else SeedSourceConfig()


def config_hash(stage: Stage, config: Config, exclude: tuple[str, ...] = ()) -> str:
    """The hash of what else a stage reads: its config sections (less ``exclude``), the
    override prompt files (``prompts_dir``) in its prompt folders and the files it names
    in ``files_read(config)`` (the review decisions); without those, the sections alone."""
    sections = config.fingerprint(*(s for s in stage.config_sections if s not in exclude))
    overrides = prompts_for(config).overrides_hash(stage.prompt_folders)
    files_read = getattr(stage, "files_read", None)
    files = {str(p): _content(p) for p in files_read(config)} if files_read else {}
    if overrides is None and not files:
        return sections
    hashed: dict[str, object] = {"config": sections, "prompts": overrides}
    if files:
        hashed["files"] = files
    return content_hash(hashed)


def _content(path: Path) -> str | None:
    """A file's hash; None while it does not exist."""
    return file_hash(path) if path.is_file() else None
