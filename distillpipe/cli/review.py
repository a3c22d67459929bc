"""``distillpipe review``: a local page to review a sample of a run, or Label Studio files."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import sys
import webbrowser
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from distillpipe.cli.common import QuietOption, mode_for
from distillpipe.errors import InputError
from distillpipe.progress import message
from distillpipe.review.labelstudio import export_tasks, import_annotations
from distillpipe.review.sample import draw_sample, parse_shares
from distillpipe.review.server import ReviewServer, bind, serve


class ExportFormat(StrEnum):
    labelstudio = "labelstudio"


def review(
    run_dir: Annotated[Path, typer.Argument(help="A run directory (holds manifest.json).")],
    sample: Annotated[int, typer.Option("--sample", min=1, help="Records to review.")] = 50,
    shares: Annotated[
        str | None,
        typer.Option(help="Strata shares, e.g. kept=0.5,rejected=0.3,borderline=0.2 (default)."),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="The sample's seed; default: the run's config.seed.")
    ] = None,
    port: Annotated[int, typer.Option(min=0, max=65535, help="0: any free port.")] = 0,
    open_browser: Annotated[
        bool, typer.Option("--open", help="Open the page in the default browser.")
    ] = False,
    export: Annotated[
        ExportFormat | None,
        typer.Option("--export", help="Write the sample as tasks for this tool instead."),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Where --export writes the tasks.")
    ] = None,
    import_file: Annotated[
        Path | None,
        typer.Option("--import", help="Read a Label Studio JSON export into RUN_DIR/review.jsonl."),
    ] = None,
    reviewer: Annotated[
        str | None, typer.Option(help="Who decides, kept with each decision; default: $USER.")
    ] = None,
    quiet: QuietOption = False,
) -> None:
    """Review a stratified sample in the browser (127.0.0.1 only); decisions go to
    RUN_DIR/review.jsonl, which the `review` filter applies on the next run."""
    mode = mode_for(quiet)
    if import_file is not None:
        added = import_annotations(import_file, run_dir)
        message(mode, f"imported {added} new decision(s) into {run_dir / 'review.jsonl'}")
        return
    drawn = draw_sample(run_dir, sample, parse_shares(shares), seed)
    if export is not None:
        if output is None:
            raise InputError("--export needs --output/-o: the tasks file to write")
        tasks, config = export_tasks(drawn, output)
        message(mode, f"{len(drawn['items'])} tasks: {tasks}; labeling config: {config}")
        return
    if not any(f["type"] == "review" for f in drawn["filters"]):
        message(mode, "[yellow]the run's filters have no `review` filter: add `- type: review` "
                "last to its config so the next run applies these decisions[/yellow]")  # fmt: skip
    server = ReviewServer(run_dir, drawn, reviewer=reviewer or _user())
    sock = bind(port)

    def ready(url: str) -> None:
        message(mode, f"reviewing {len(drawn['items'])} records of {run_dir}; Ctrl-C stops")
        print(url, flush=True)  # the one line on stdout: the page with its token
        if open_browser:
            webbrowser.open(url)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(server, sock, ready))
    sys.stdout.flush()


def _user() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None
