"""Plain helpers the tests import: HTTP waits and configs written to disk."""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml


def wait_for_http(url: str, timeout: float, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=1.0) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


def write_config(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def small_llamacpp_config(**generate: object) -> dict:
    """A config for the embedded gemma kept small enough for 2 shared cores."""
    return {
        "name": "test",
        "seed": 7,
        "teacher": {"backend": "llamacpp", "mode": "completion", "n_ctx": 512},
        "generate": {"n": 1, "max_tokens": 8, "temperature": 0.7, **generate},
    }


def processes_with(marker: str) -> list[int]:
    """Pids whose command line contains ``marker`` (a sandboxed program's tag)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found
