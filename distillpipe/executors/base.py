"""The executor contract: run one stage from an input file into an output file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol

from distillpipe.config import Config
from distillpipe.progress import Mode
from distillpipe.stages.base import Stage
from distillpipe.teachers.cost import BudgetGuard

if TYPE_CHECKING:
    from distillpipe.runner import StageResult


class Executor(Protocol):
    name: ClassVar[str]

    def run_stage(
        self,
        stage: Stage,
        config: Config,
        input_path: str | Path,
        output_path: str | Path,
        *,
        rejected_path: str | Path | None = None,
        progress_mode: Mode = "quiet",
        budget: BudgetGuard | None = None,
        state_dir: Path | None = None,
    ) -> StageResult: ...
