"""Every shipped config validates (keys for the API ones come from the environment)."""

import importlib.util
from pathlib import Path

import pytest

from distillpipe.config import load_config
from distillpipe.errors import MissingDependencyError

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_shipped_config_is_valid(path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    try:
        config = load_config(path)
    except MissingDependencyError as exc:  # e.g. vllm.yaml where the vllm extra is absent
        assert importlib.util.find_spec(exc.extra) is None, exc
        return
    if config.input is not None:
        assert (path.parent / config.input).exists()
