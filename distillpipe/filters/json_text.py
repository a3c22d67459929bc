"""JSON out of a model's answer, with the common wrappers taken off.

``fence``  a fenced block (```json … ``` or an untagged one) holds the JSON
``prose``  text before the first ``{`` / ``[`` and after the JSON ends is prose
           ("Here is the JSON: {…} Hope this helps.")

The answer is model output, untrusted: nothing here evaluates it, and an answer
that is no JSON gives the decoder's own message (where it stopped).
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal

from distillpipe.filters.codeblocks import fenced_blocks

Wrapper = Literal["fence", "prose"]
_MISSING = object()


@dataclass(frozen=True, slots=True)
class Extracted:
    value: Any = _MISSING
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def extract_json(text: str, strip: Collection[Wrapper] = ("fence",)) -> Extracted:
    """The JSON value the answer holds, or why it holds none."""
    body = text.strip()
    if "fence" in strip:
        blocks = [b for b in fenced_blocks(body) if b.tag in ("json", "") and b.code.strip()]
        if blocks:
            body = blocks[0].code.strip()
    if not body:
        return Extracted(error="not JSON: the answer is empty")
    try:
        return Extracted(json.loads(body))
    except json.JSONDecodeError as exc:
        whole = exc
    if "prose" in strip:
        starts = [i for i in (body.find("{"), body.find("[")) if i >= 0]
        if starts:
            try:
                value, _ = json.JSONDecoder().raw_decode(body, min(starts))
                return Extracted(value)
            except json.JSONDecodeError as exc:
                return Extracted(error=f"not JSON: {exc}")
    return Extracted(error=f"not JSON: {whole}")


def json_path(parts: Collection[Any]) -> str:
    """A jsonschema error's path as ``$.items[0].kind``."""
    path = "$"
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path
