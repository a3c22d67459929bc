"""Plug-ins by name: every teacher backend, filter, stage and export format registers
an entry point.

Built-ins register in distillpipe's own pyproject, so a third-party package adds
one the same way, with one line in its pyproject::

    [project.entry-points."distillpipe.filters"]
    shout = "distillpipe_shout:ShoutFilter"

Entry points come from the installed metadata: after a change to them,
``pip install -e .`` again. What each group's entry point names:

``distillpipe.teachers``   a ``teachers.base.Teacher`` class; ``teacher.backend`` picks it.
``distillpipe.filters``    a ``filters.base.Filter`` class; a ``filter:`` item's ``type``.
``distillpipe.exporters``  an ``exporters.formats.Exporter`` class; ``export.format``.
``distillpipe.stages``     a ``stages.base.Stage`` class, built with no arguments; its
    entry point's name is its ``name``. ``distillpipe run`` chains the registered
    stages by their ``position`` (seed 100, evolve 200, generate 300, filter 400,
    export 500; a plug-in picks a number between the two it goes between, ties by
    name). A plug-in stage declares ``Options``, a ``config.StageOptions`` model:
    its options are the config's top-level section named by its ``section``
    (validated by that model like any built-in section, unknown keys named with
    their line), the stage runs when the config has that section (and its
    ``enabled`` is not false), reads it as ``ctx.config.section(self.section)``,
    and lists it in ``config_sections`` so a change to it redoes the stage.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

from distillpipe.errors import ConfigError

TEACHERS = "distillpipe.teachers"
FILTERS = "distillpipe.filters"
STAGES = "distillpipe.stages"
EXPORTERS = "distillpipe.exporters"


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


def load_all(group: str) -> dict[str, Any]:
    """Every object registered in ``group``, by name."""
    found = {entry.name: entry for entry in entry_points(group=group)}
    return {name: found[name].load() for name in sorted(found)}
