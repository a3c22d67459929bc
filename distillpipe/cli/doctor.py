"""``distillpipe doctor [CONFIG]``: check what a run needs, one line per check."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from distillpipe.cli.common import SetOption
from distillpipe.doctor import run_checks
from distillpipe.progress import stderr


def doctor(
    config: Annotated[
        Path | None, typer.Argument(help="The YAML config a run will use (optional).")
    ] = None,
    set: SetOption = None,
) -> None:
    """Check the embedded model, the cache, the extras, the API key and the endpoint."""
    findings = run_checks(config, set or [])
    for finding in findings:
        mark = "[green]ok[/green]     " if finding.ok else "[red]problem[/red]"
        stderr.print(f"{mark} {escape(finding.check)}: {escape(finding.detail)}", soft_wrap=True)
    problems = sum(not finding.ok for finding in findings)
    if problems:
        stderr.print(f"[red]{problems} problem(s)[/red]: fix them before a run")
        raise typer.Exit(1)
