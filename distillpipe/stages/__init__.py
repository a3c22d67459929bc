"""The pipeline's stages: each registers an entry point (``distillpipe.stages``), the
built-ins too, and ``distillpipe run`` chains them by ``position`` (see registry.py)."""

from __future__ import annotations

from distillpipe import registry
from distillpipe.registry import load_plugin
from distillpipe.stages.base import Stage


def stage_named(name: str) -> Stage:
    """The stage registered as ``name``; an unknown name lists the known ones."""
    return load_plugin(registry.STAGES, name, f"stage {name!r} unknown")()


def registered_stages() -> list[Stage]:
    """Every registered stage, in the order ``distillpipe run`` chains them."""
    stages = [stage() for stage in registry.load_all(registry.STAGES).values()]
    return sorted(stages, key=lambda stage: (stage.position, stage.name))
