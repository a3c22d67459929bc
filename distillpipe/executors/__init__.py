"""Where a stage's model work runs: ``local`` (this process, the default) or ``ray``.

Both write the same records: an executor only decides where the teacher
calls are answered; the stage itself always runs in the driver, replaying
completions from the response cache (see ``executors/ray.py``).
"""

from __future__ import annotations

from importlib import import_module

from distillpipe.config import Config
from distillpipe.executors.base import Executor

EXECUTORS = {
    "local": "distillpipe.executors.local:LocalExecutor",
    "ray": "distillpipe.executors.ray:RayExecutor",
}


def executor_for(config: Config) -> Executor:
    """The executor ``config.executor.type`` names, imported only when chosen."""
    module, _, name = EXECUTORS[config.executor.type].partition(":")
    return getattr(import_module(module), name)(config.executor)
