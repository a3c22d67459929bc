"""The ``distillpipe`` command: one thin command per stage, plus run, config, cache and prompts.

Data goes to stdout, progress and messages to stderr. Exit codes: 0 done,
1 failed (one line naming the file, line or key), 2 usage error,
130 interrupted (rerun the same command to resume).
"""

from __future__ import annotations

import os
import sys

import typer
from rich.markup import escape

from distillpipe.cli import cache, config, prompts
from distillpipe.cli.doctor import doctor
from distillpipe.cli.estimate import estimate
from distillpipe.cli.evolve import evolve
from distillpipe.cli.export import export
from distillpipe.cli.filter import filter
from distillpipe.cli.generate import generate
from distillpipe.cli.magpie import magpie
from distillpipe.cli.personas import personas
from distillpipe.cli.report import report
from distillpipe.cli.review import review
from distillpipe.cli.run import run
from distillpipe.cli.seed import seed
from distillpipe.cli.topics import topics
from distillpipe.errors import DistillpipeError
from distillpipe.progress import stderr

app = typer.Typer(
    name="distillpipe",
    help="seed → evolve → generate → filter → export: distil an SFT dataset from a teacher LLM.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command()(run)
app.command()(topics)
app.command()(seed)
app.command()(personas)
app.command()(magpie)
app.command()(evolve)
app.command()(generate)
app.command(name="filter")(filter)
app.command()(export)
app.command()(report)
app.command()(review)
app.command()(estimate)
app.command()(doctor)
app.add_typer(config.app, name="config")
app.add_typer(cache.app, name="cache")
app.add_typer(prompts.app, name="prompts")

EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


def main() -> None:
    debug = os.environ.get("DISTILLPIPE_DEBUG") == "1"
    try:
        code = app(standalone_mode=False)
    except typer.Abort:
        _interrupted()
    except typer.TyperException as exc:  # usage errors: typer's click shows them, exit 2
        exc.show()
        sys.exit(getattr(exc, "exit_code", EXIT_USAGE))
    except KeyboardInterrupt:
        _interrupted()
    except DistillpipeError as exc:
        if debug:
            raise
        stderr.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
        sys.exit(EXIT_FAILED)
    sys.exit(code if isinstance(code, int) else 0)


def _interrupted() -> None:
    stderr.print("[yellow]interrupted[/yellow]: rerun the same command to resume from the cache")
    sys.exit(EXIT_INTERRUPTED)
