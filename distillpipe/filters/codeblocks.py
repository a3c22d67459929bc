"""The code in a response: its fenced blocks (``` or ~~~), by language tag.

A block tagged with one of the language's fences wins; failing those, untagged
blocks count; a response without any gives no code (``whole`` mode takes the
whole text instead). An unclosed last block — a response cut at the token
limit — still counts, so its truncated code fails the tests rather than
vanishing.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

_OPEN = re.compile(r"^[ \t]*(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\s`{]*)")


@dataclass(frozen=True, slots=True)
class Block:
    tag: str
    code: str


def fenced_blocks(text: str) -> list[Block]:
    blocks: list[Block] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        opened = _OPEN.match(lines[index])
        if not opened:
            index += 1
            continue
        fence = opened.group("fence")
        body: list[str] = []
        index += 1
        while index < len(lines):
            stripped = lines[index].strip()
            if stripped.startswith(fence) and set(stripped) == {fence[0]}:
                break
            body.append(lines[index])
            index += 1
        index += 1
        blocks.append(Block(opened.group("info").lower(), "\n".join(body)))
    return blocks


def extract_code(
    text: str,
    fences: Collection[str],
    mode: Literal["fenced", "whole"] = "fenced",
    blocks: Literal["last", "all"] = "last",
) -> str | None:
    """The code to run, or None when the response has none."""
    if mode == "whole":
        return text if text.strip() else None
    found = fenced_blocks(text)
    wanted = {tag.lower() for tag in fences}
    chosen = [b for b in found if b.tag in wanted] or [b for b in found if not b.tag]
    chosen = [b for b in chosen if b.code.strip()]
    if not chosen:
        return None
    if blocks == "last":
        return chosen[-1].code
    return "\n\n".join(block.code for block in chosen)
