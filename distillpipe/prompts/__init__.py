"""Every prompt template is a file in this folder; this module loads and renders them.

Templates are Jinja2 (``StrictUndefined``: a missing variable is an error, not
an empty string). Chat and completion variants sit side by side as
``NAME.chat.jinja`` and ``NAME.completion.jinja``.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from distillpipe.errors import ConfigError

PROMPTS_DIR = Path(__file__).parent

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(PROMPTS_DIR),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,
)


@cache
def template(name: str) -> jinja2.Template:
    try:
        return _env.get_template(name)
    except jinja2.TemplateNotFound:
        raise ConfigError(f"no prompt template {name!r} in {PROMPTS_DIR}") from None


def render(name: str, **values: Any) -> str:
    return template(name).render(**values)


@cache
def text(name: str) -> str:
    path = PROMPTS_DIR / name
    if not path.is_file():
        raise ConfigError(f"no prompt file {name!r} in {PROMPTS_DIR}")
    return path.read_text()


def lines(name: str) -> tuple[str, ...]:
    """A file's non-empty lines (stop sequences, word lists)."""
    return tuple(line for line in text(name).splitlines() if line.strip())


def paragraphs(name: str) -> tuple[str, ...]:
    """A file's blank-line-separated paragraphs (alternative system prompts)."""
    return tuple(p.strip() for p in text(name).split("\n\n") if p.strip())
