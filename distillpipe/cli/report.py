"""``distillpipe report``: one self-contained HTML page about a run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from distillpipe.cli.common import QuietOption, mode_for
from distillpipe.progress import message
from distillpipe.report import write_report


def report(
    run_dir: Annotated[Path, typer.Argument(help="A run directory (holds manifest.json).")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Default: RUN_DIR/report.html.")
    ] = None,
    quiet: QuietOption = False,
) -> None:
    """Funnel, lengths, filter scores, evolution, tokens and examples, with plots."""
    written = write_report(run_dir, output)
    message(mode_for(quiet), f"report: {written}")
