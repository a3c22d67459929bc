"""``distillpipe config validate|show``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from distillpipe.cli.common import SetOption, load
from distillpipe.config import show as show_config

app = typer.Typer(help="Check or print a config.", no_args_is_help=True)
ConfigArgument = Annotated[Path, typer.Argument(help="The YAML config.")]


@app.command()
def validate(config: ConfigArgument, set: SetOption = None) -> None:
    """Exit 0 when the config is valid; else name the bad key and line."""
    load(config, set)
    typer.echo(f"{config}: ok", err=True)


@app.command()
def show(config: ConfigArgument, set: SetOption = None) -> None:
    """Print the resolved config (defaults filled in, secrets redacted)."""
    typer.echo(show_config(load(config, set)), nl=False)
