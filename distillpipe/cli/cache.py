"""``distillpipe cache stats|clear``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from distillpipe.cache import ResponseCache
from distillpipe.progress import stderr

app = typer.Typer(help="Inspect or clear the response cache.", no_args_is_help=True)
PathOption = Annotated[
    str | None, typer.Option("--path", help="Cache file; default: the user cache dir.")
]


@app.command()
def stats(path: PathOption = None) -> None:
    """Entries per model, and the file's size."""
    with ResponseCache(path) as cache:
        info = cache.stats()
    table = Table(title=f"{info.path}: {info.entries:,} entries, {info.bytes / 1e6:,.1f} MB")
    table.add_column("model")
    table.add_column("entries", justify="right")
    for model, count in info.by_model.items():
        table.add_row(model, f"{count:,}")
    stderr.print(table)
    if info.legacy:
        stderr.print(
            f"{info.legacy:,} entries were keyed before cache keys v2 (by model name only) and "
            "are never matched again; `distillpipe cache clear --legacy` removes them"
        )


@app.command()
def clear(
    path: PathOption = None,
    model: Annotated[str | None, typer.Option(help="Only this model's entries.")] = None,
    legacy: Annotated[
        bool, typer.Option("--legacy", help="Only entries keyed before cache keys v2.")
    ] = False,
) -> None:
    """Delete cached completions (all, one model's, or those no key matches any more)."""
    with ResponseCache(path) as cache:
        removed = cache.clear(model, legacy=legacy)
    typer.echo(f"removed {removed:,} cached completions", err=True)
