"""``distillpipe export``: records → a training dataset directory (or rows on stdout)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from distillpipe.cli.common import (
    ConfigOption,
    InputOption,
    QuietOption,
    SetOption,
    load,
    mode_for,
)
from distillpipe.io import STDIO, JsonlWriter, read_records
from distillpipe.progress import message
from distillpipe.stages.export import build_export, read_manifest, write_export

OutputDirOption = Annotated[
    str,
    typer.Option(
        "--output",
        "-o",
        help="Export directory (train.jsonl, README.md, ...); - for rows on stdout.",
    ),
]
FormatOption = Annotated[
    str | None,
    typer.Option(
        "--format",
        "-f",
        help="Overrides export.format (messages, sharegpt, alpaca, prompt-completion, dpo, "
        "or a plug-in's).",
    ),
]


def export(
    config: ConfigOption,
    input: InputOption = "-",
    output: OutputDirOption = "-",
    format: FormatOption = None,
    set: SetOption = None,
    quiet: QuietOption = False,
) -> None:
    """Write SFT rows (messages, sharegpt, alpaca, prompt-completion) or DPO pairs."""
    overrides = [*(set or []), *([f"export.format={format}"] if format is not None else [])]
    resolved = load(config, overrides)  # validated like the file's export.format
    exported = build_export(read_records(input), resolved)
    mode = mode_for(quiet)
    if output == STDIO:
        with JsonlWriter(STDIO) as writer:
            writer.write_many(exported.rows())
    else:
        manifest = None if input == STDIO else read_manifest(Path(input).parent)
        files = write_export(exported, resolved, Path(output), manifest)
        message(mode, f"wrote {output}/: {', '.join(files)}")
    counts = ", ".join(f"{split} {len(rows):,}" for split, rows in exported.splits.items())
    skipped = ", ".join(f"{reason} {n:,}" for reason, n in sorted(exported.skipped.items()))
    message(mode, f"export: {exported.records_in:,} records → {counts}")
    if skipped:
        message(mode, f"skipped: {skipped}")
