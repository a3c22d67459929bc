"""The pipeline's stages, in the order ``distillpipe run`` chains them."""

from __future__ import annotations

from distillpipe.stages.base import Stage
from distillpipe.stages.evolve import EvolveStage
from distillpipe.stages.export import ExportStage
from distillpipe.stages.filter import FilterStage
from distillpipe.stages.generate import GenerateStage
from distillpipe.stages.magpie import MagpieStage
from distillpipe.stages.seed import SeedStage

STAGES: list[Stage] = [
    SeedStage(),
    MagpieStage(),
    EvolveStage(),
    GenerateStage(),
    FilterStage(),
    ExportStage(),
]


def stage_named(name: str) -> Stage:
    return next(stage for stage in STAGES if stage.name == name)
