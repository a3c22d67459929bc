"""The default executor: the stage and its teacher calls run in this process."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from distillpipe.config import Config, ExecutorConfig
from distillpipe.progress import Mode
from distillpipe.runner import StageResult, run_stage
from distillpipe.stages.base import Stage
from distillpipe.teachers.cost import BudgetGuard


class LocalExecutor:
    name: ClassVar[str] = "local"

    def __init__(self, options: ExecutorConfig | None = None) -> None:
        self.options = options or ExecutorConfig()

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
    ) -> StageResult:
        return run_stage(
            stage,
            config,
            input_path,
            output_path,
            rejected_path=rejected_path,
            progress_mode=progress_mode,
            budget=budget,
            state_dir=state_dir,
        )
