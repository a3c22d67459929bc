"""``distillpipe prompts list|copy``: the prompt templates, and where each comes from."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

import typer

from distillpipe.config import load_config
from distillpipe.errors import ConfigError
from distillpipe.prompts import PACKAGED, PROMPTS_DIR, prompts_for

app = typer.Typer(help="List the prompt templates or copy one out to edit.", no_args_is_help=True)
OptionalConfig = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="A config whose prompts_dir overrides are shown."),
]


@app.command(name="list")
def list_(config: OptionalConfig = None) -> None:
    """Each prompt file by name, with the file it comes from (the package or prompts_dir)."""
    prompts = prompts_for(load_config(config)) if config is not None else PACKAGED
    for name, path in prompts.names():
        source = "package" if path.is_relative_to(PROMPTS_DIR) else str(path)
        typer.echo(f"{name}\t{source}")


@app.command()
def copy(
    name: Annotated[str, typer.Argument(help="A prompt file, e.g. generate/default.chat.jinja.")],
    folder: Annotated[Path, typer.Argument(help="Where to copy it: the prompts_dir to edit.")],
) -> None:
    """Copy a packaged prompt file to FOLDER/NAME, where a config's prompts_dir shadows it."""
    source = PACKAGED.path(name)
    target = folder / name
    if target.exists():
        raise ConfigError(f"{target}: already exists; edit it, or remove it to copy afresh")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    typer.echo(str(target))
