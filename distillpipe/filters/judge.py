"""Reading a judge's 1–10 rating out of free text, robustly.

Tried in order: ``[[7]]`` (MT-Bench), "Rating: 7" / "Score: 7/10", "7/10",
then a reply that is nothing but a number. A value outside 1–10, or no value
at all, is *unparseable* (None), never 0.
"""

from __future__ import annotations

import re

_PATTERNS = (
    re.compile(r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]"),
    re.compile(r"(?:rating|score|grade)\W{0,8}?(\d+(?:\.\d+)?)", re.I),
    re.compile(r"(\d+(?:\.\d+)?)\s*(?:/|out of)\s*10\b", re.I),
    re.compile(r"^\W*(\d+(?:\.\d+)?)\W*$"),
)


def parse_rating(text: str) -> float | None:
    for pattern in _PATTERNS:
        found = pattern.findall(text.strip())
        if found:
            value = float(found[-1])
            return value if 1.0 <= value <= 10.0 else None
    return None
