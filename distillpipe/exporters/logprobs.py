"""The logprobs sidecar for white-box (KL) distillation.

Line i of ``<split>.logprobs.jsonl`` belongs to line i of ``<split>.jsonl``:
the teacher's tokens of the exported response with their log-probabilities
and top-k alternatives, or nulls where the teacher returned none. The
exported completion is the response text stripped of surrounding whitespace;
``text_offset`` is where it starts in the concatenated tokens.
"""

from __future__ import annotations

from typing import Any


def sidecar_row(record: dict[str, Any], sample: int | None) -> dict[str, Any]:
    """``sample`` None: a row that is no teacher sample (the reference solution)."""
    response = {} if sample is None else (record.get("responses") or [])[sample]
    rows = response.get("logprobs")
    row: dict[str, Any] = {"id": record["id"], "sample": sample}
    if not rows:
        return {**row, "tokens": None, "logprobs": None, "top_logprobs": None, "text_offset": None}
    tokens = [token for token, _, _ in rows]
    text = response.get("text") or ""
    joined = "".join(tokens)
    stripped = text.strip()
    offset = joined.find(stripped) if stripped else 0
    return {
        **row,
        "tokens": tokens,
        "logprobs": [logprob for _, logprob, _ in rows],
        "top_logprobs": [top for _, _, top in rows],
        "text_offset": offset if offset >= 0 else None,
    }
