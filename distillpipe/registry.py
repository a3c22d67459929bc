"""Plug-ins by name: every teacher backend and filter registers an entry point.

Built-ins register in distillpipe's own pyproject, so a third-party package adds
one the same way, with one line in its pyproject (``[project.entry-points.
"distillpipe.filters"]``). Entry points come from the installed metadata:
after a change to them, ``pip install -e .`` again.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

from distillpipe.errors import ConfigError

TEACHERS = "distillpipe.teachers"
FILTERS = "distillpipe.filters"


def names(group: str) -> list[str]:
    return sorted({entry.name for entry in entry_points(group=group)})


def load_plugin(group: str, name: str, unknown: str) -> Any:
    """The object registered as ``name``; else ConfigError ``unknown`` + the known names
    (``unknown`` names the config key and the value, e.g. "filter type 'x' unknown")."""
    found = {entry.name: entry for entry in entry_points(group=group)}
    if name not in found:
        known = ", ".join(sorted(found)) or "none registered"
        raise ConfigError(f"{unknown} (known: {known})")
    return found[name].load()
