"""Shared fixtures: a private cache dir per test, the embedded GGUF, a real llama.cpp server."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fault_server import FaultServer
from gguf_files import GEMMA3_CHAT_TEMPLATE, with_string_metadata
from support import wait_for_http

from distillpipe.models import embedded_gguf_path
from distillpipe.teachers.server import free_port


@pytest.fixture(autouse=True)
def private_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test touches the real user cache (model files excepted: they live apart)."""
    cache_dir = tmp_path / "cache"
    monkeypatch.setenv("DISTILLPIPE_CACHE_DIR", str(cache_dir))
    return cache_dir


@pytest.fixture(scope="session")
def gguf_path() -> Path:
    return embedded_gguf_path()


@pytest.fixture(scope="session")
def gemma_with_chat_template(gguf_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded gemma with Gemma 3's chat template in its metadata (it ships none)."""
    target = tmp_path_factory.mktemp("gguf") / "gemma-3-270m-chat-template.gguf"
    return with_string_metadata(gguf_path, target, "tokenizer.chat_template", GEMMA3_CHAT_TEMPLATE)


@pytest.fixture(scope="session")
def llama_server(gguf_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real OpenAI-compatible llama.cpp server on loopback; yields its base URL (…/v1)."""
    port = free_port()
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "llama_cpp.server",
                "--model", str(gguf_path),
                "--host", "127.0.0.1",
                "--port", str(port),
                "--n_ctx", "2048",
                "--chat_format", "gemma",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        wait_for_http(f"{base_url}/models", timeout=120, process=process)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def cli_env(private_cache_dir: Path) -> dict[str, str]:
    """Environment for running ``distillpipe`` as a subprocess with the private cache."""
    return {**os.environ, "DISTILLPIPE_CACHE_DIR": str(private_cache_dir)}


@pytest.fixture
def fault_server() -> Iterator[FaultServer]:
    """tests/fault_server.py on loopback (OpenAI + Anthropic wire formats, faults on demand)."""
    server = FaultServer().start()
    try:
        yield server
    finally:
        server.stop()
