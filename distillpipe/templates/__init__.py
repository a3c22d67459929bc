"""Output templates (the HTML report, the dataset card), as files in this folder.

Jinja2 with ``StrictUndefined``; ``.html`` templates are autoescaped.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jinja2

TEMPLATES_DIR = Path(__file__).parent


@cache
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        # select_autoescape matches the name's ending: "report.html.jinja" ends in .jinja
        autoescape=jinja2.select_autoescape(["html", "html.jinja"], default_for_string=False),
    )


def render(template: str, /, **values: Any) -> str:
    return environment().get_template(template).render(**values)
