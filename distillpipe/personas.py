"""Persona lists: who the ``personas`` stage writes questions as.

A text file holds one persona a line (blank lines and ``#`` comments skipped);
a ``.jsonl`` file one object a line with a ``persona`` field (the description)
and any others (``traits``, ``name``, ``age``…), which the prompt shows and
the records keep. Bad input is an InputError naming the file and line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distillpipe.errors import InputError
from distillpipe.io import numbered_objects

MAX_PERSONA_CHARS = 1000


@dataclass(frozen=True)
class Persona:
    text: str
    fields: dict[str, Any] = field(default_factory=dict)  # the JSONL row less `persona`

    def traits(self) -> str:
        """The other fields as one line, for the prompt ("" when there are none)."""
        parts = []
        for key, value in self.fields.items():
            shown = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
            if shown.strip():
                parts.append(f"{key}: {shown.strip()}")
        return "; ".join(parts)


def load_personas(path: str | Path) -> list[Persona]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such persona file")
    found = _jsonl(path) if path.suffix == ".jsonl" else _lines(path)
    if not found:
        raise InputError(f"{path}: holds no personas")
    return found


def _lines(path: Path) -> list[Persona]:
    personas = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        _check_length(text, path, number)
        personas.append(Persona(text))
    return personas


def _jsonl(path: Path) -> list[Persona]:
    personas = []
    for number, row in numbered_objects(path):
        text = row.get("persona")
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"{path}:{number}: needs a `persona` field holding its description")
        _check_length(text.strip(), path, number)
        personas.append(Persona(text.strip(), {k: v for k, v in row.items() if k != "persona"}))
    return personas


def _check_length(text: str, path: Path, number: int) -> None:
    if len(text) > MAX_PERSONA_CHARS:
        raise InputError(
            f"{path}:{number}: a persona of {len(text)} characters (at most {MAX_PERSONA_CHARS})"
        )
