"""Read the short items of a list a teacher wrote: topic names, questions.

Model output is untrusted text, and a small base model's lists are messy:
items numbered ``1.``, ``1)``, ``(1)`` or ``Step 1:``, bullets (``-``, ``*``,
``•``), markdown bold and headings, a chatty preface, a comma-separated line
instead of a list, an item cut off by the token limit. :func:`list_items`
keeps what is usable: one clean item per line (or per comma when the text is
one line of several names), markers and wrapping quotes stripped, empty and
overlong items dropped, repeats within the list dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_MARKER = re.compile(
    r"^[ \t]*(?:#{1,6}[ \t]+)?(?:>[ \t]*)?"  # a heading or a quote
    r"(?:[-*•+·▪◦][ \t]+"  # a bullet
    r"|\(?\d{1,3}[.):]+(?!\d)[ \t]*"  # 1.  1)  (1)  (not 1.5)
    r"|\(?[a-zA-Z][.)][ \t]+"  # a.  b)  (not U.S.)
    r"|(?:item|topic|question|subtopic|step)[ \t]*#?\d{1,3}[ \t]*[.):]?[ \t]*"  # Question 1:
    r")?",
    re.IGNORECASE,
)
_EMPHASIS = re.compile(r"\*\*|__|`")
_WHITESPACE = re.compile(r"\s+")
_QUOTES = "\"'“”‘’"
_LETTER = re.compile(r"[^\W\d_]")
_LIST_LINE = re.compile(r"^[ \t]*(?:[-*•+·▪◦][ \t]|\(?\d{1,3}[.):])")


@dataclass(frozen=True, slots=True)
class ListLimits:
    """What counts as one item: at most ``max_chars`` characters and ``max_words`` words."""

    max_chars: int = 200
    max_words: int = 40


def clean_item(text: str) -> str:
    """One item without its list marker, emphasis, wrapping quotes and extra spaces."""
    text = _EMPHASIS.sub("", text)
    text = _MARKER.sub("", text, count=1)
    text = _WHITESPACE.sub(" ", text).strip()
    while len(text) >= 2 and text[0] in _QUOTES and text[-1] in _QUOTES:
        text = text[1:-1].strip()
    return text.rstrip(":;,").strip()


def _lines(text: str) -> list[str]:
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) == 1 and not _LIST_LINE.match(lines[0]):
        parts = re.split(r"[;,]", lines[0])
        if len(parts) >= 3:  # "Algebra, Geometry, Calculus": one line of names
            return parts
    return lines


def list_items(
    text: str,
    *,
    limits: ListLimits = ListLimits(),
    truncated: bool = False,
    leading_item: bool = False,
) -> list[str]:
    """The usable items of ``text``, in order.

    ``leading_item``: the text before the first line break is an item even
    though it has no marker (a completion-mode prompt ends at ``1.``, so the
    model starts inside the first item); otherwise a first line that ends in a
    colon is a preface and skipped. ``truncated``: the completion hit the token
    limit, so its last line is dropped whole.
    """
    lines = _lines(text)
    if truncated and lines:
        lines.pop()
    if not leading_item and lines and lines[0].rstrip().endswith(":"):
        lines = lines[1:]
    items: list[str] = []
    seen: set[str] = set()
    for line in lines:
        item = clean_item(line)
        key = item.lower()
        if not item or key in seen or not _LETTER.search(item):
            continue
        if len(item) > limits.max_chars or len(item.split()) > limits.max_words:
            continue
        seen.add(key)
        items.append(item)
    return items


def first_item(text: str, *, limits: ListLimits = ListLimits()) -> str:
    """The first usable line of ``text`` ("" when none): a single answer such as one question."""
    items = list_items(text, limits=limits, leading_item=True)
    return items[0] if items else ""
