"""A run directory's ``manifest.json``: every finished stage with the hashes of what it read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from distillpipe.io import atomic_write_bytes, file_hash

MANIFEST = "manifest.json"


class Manifest:
    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / MANIFEST
        self.data: dict[str, Any] = {"stages": {}}
        if self.path.exists():
            self.data = orjson.loads(self.path.read_bytes())

    def finished(self, stage: str, input_hash: str, config_hash: str, output: Path) -> bool:
        entry = self.data["stages"].get(stage)
        return bool(
            entry
            and entry.get("status") == "done"
            and entry.get("input_hash") == input_hash
            and entry.get("config_hash") == config_hash
            and output.exists()
            and entry.get("output_hash") == file_hash(output)
        )

    def record(self, stage: str, entry: dict[str, Any]) -> None:
        self.data["stages"][stage] = entry
        self.save()

    def save(self) -> None:
        atomic_write_bytes(self.path, orjson.dumps(self.data, option=orjson.OPT_INDENT_2))
