"""Is a sample's final answer the reference's? Extraction by shape, then a chain of checks.

Extraction (``extract_final``): ``boxed`` the last \\boxed{}; ``gsm8k`` what
follows ``####``; ``choice`` a multiple-choice letter; ``whole`` the whole
(stripped) text; ``auto`` the first of boxed, ``####``, "the answer is …",
an "Answer:" line and the last number (``answers.extract_raw_answer``), and
failing all of those a one-line response of at most ``SHORT_ANSWER`` characters.

Equivalence (``equivalent``), first match wins, and says which check matched:

    choice      the reference is a letter: the sample's letter must be the same
    exact       the same text
    normalised  the project's normaliser agrees (1,000 = 1000.0, \\frac{1}{2} = 0.5,
                "12 apples" = 12, case and spacing) — unless both name different units
    math        Hugging Face math-verify: LaTeX and plain expressions, fractions, sets,
                intervals, equations, symbolic equality
"""

from __future__ import annotations

import logging
import re
import threading
from functools import lru_cache
from typing import Any, Literal

from distillpipe.errors import DistillpipeError
from distillpipe.filters.answers import (
    after_hashes,
    extract_raw_answer,
    last_boxed,
    normalise_answer,
)

Shape = Literal["auto", "boxed", "gsm8k", "choice", "whole"]
Method = Literal["choice", "exact", "normalised", "math"]
MATH_TIMEOUT_S = 5
SHORT_ANSWER = 60  # characters: a one-line response this short is its own answer

_LETTER = re.compile(r"^\(?([A-Ja-j])\)?[.:)]?$")
_LETTER_LEAD = re.compile(r"^\(?([A-J])[.:)]\s")
_LETTER_IN_TEXT = [
    re.compile(r"(?:answer|option|choice)\s*(?:is|:)?\s*[:\s]*\(?\**([A-J])\b\)?", re.I),
    re.compile(r"\(([A-J])\)"),
    re.compile(r"^\s*\**([A-J])[.):]?\**\s*$", re.M),
]
_UNIT = re.compile(r"^[$€£]?-?[\d.,/]+%?\s*([^\W\d_][^\W\d_ ]*(?:\s+[^\W\d_]+)*)\s*$")
_TEXT = re.compile(r"\\(?:text|mathrm|textrm|mbox)\{([^{}]*)\}")


def extract_final(text: str, shape: Shape) -> str | None:
    """The final answer ``text`` gives in ``shape``, as written; None when absent."""
    if shape == "boxed":
        found = last_boxed(text)
    elif shape == "gsm8k":
        found = after_hashes(text)
    elif shape == "choice":
        found = choice_letter(text)
    elif shape == "whole":
        found = text
    else:
        found = extract_raw_answer(text)
        if found is None and len(text) <= SHORT_ANSWER and "\n" not in text.strip():
            found = text  # a bare short answer: "Paris."
    if found is None:
        return None
    found = found.strip()
    return (found[:-1].rstrip() if found.endswith(".") else found) or None  # a sentence's end


def reference_answer(value: Any, shape: Shape) -> str | None:
    """A reference field's answer: ``auto`` takes the ``####`` or \\boxed{} tail of a
    worked solution, else the whole value."""
    text = str(value).strip()
    if shape != "auto":
        return extract_final(text, shape)
    for found in (after_hashes(text), last_boxed(text)):
        if found is not None and found.strip():
            return found.strip()
    return text or None


def choice_letter(text: str) -> str | None:
    """The multiple-choice letter a text settles on (the last one it states)."""
    short = text if len(text) <= 40 else None  # "C) Paris"; not "A cat sat…"
    for candidate in (extract_raw_answer(text), short):
        if candidate is not None and (letter := _as_letter(candidate)):
            return letter
    for pattern in _LETTER_IN_TEXT:
        found = pattern.findall(text)
        if found:
            return found[-1].upper()
    return None


def _as_letter(text: str) -> str | None:
    """ "B", "(B)", "B.", "C) Paris", "(C) Paris" — not "A cat"."""
    cleaned = _TEXT.sub(r"\1", text).strip().strip("*$").strip()
    matched = _LETTER.match(cleaned) or _LETTER_LEAD.match(cleaned)
    return matched.group(1).upper() if matched else None


def equivalent(reference: str, answer: str | None) -> Method | None:
    """How ``answer`` matches ``reference``, or None when it does not."""
    if answer is None:
        return None
    letter = _as_letter(reference) if len(reference.strip()) <= 4 else None
    if letter is not None:
        return "choice" if choice_letter(answer) == letter else None
    if answer.strip() == reference.strip():
        return "exact"
    if _units_differ(reference, answer):
        return None
    if normalise_answer(reference) == normalise_answer(answer):
        return "normalised"
    return "math" if math_equal(reference, answer) else None


def _units_differ(reference: str, answer: str) -> bool:
    units = [_unit(text) for text in (reference, answer)]
    return None not in units and units[0] != units[1]


def _unit(text: str) -> str | None:
    matched = _UNIT.match(_TEXT.sub(r" \1", text).replace("\\", " ").strip())
    if not matched:
        return None
    unit = matched.group(1).lower()
    return unit[:-1] if unit.endswith("s") and len(unit) > 2 else unit


def math_equal(reference: str, answer: str) -> bool:
    """math-verify's verdict on two answers (each read as LaTeX, else as an expression)."""
    verify, gold = _math_verify(), _parsed(reference)
    if not gold:
        return False
    target = _parsed(answer)
    if not target:
        return False
    return bool(verify(gold, target, timeout_seconds=_timeout()))


@lru_cache(maxsize=4096)
def _parsed(text: str) -> list[Any]:
    parse, configs = _math_parse()
    return parse(f"${text}$", extraction_config=configs, parsing_timeout=_timeout())


def _timeout() -> int | None:
    # math-verify times out with signal.alarm, which only the main thread may use
    return MATH_TIMEOUT_S if threading.current_thread() is threading.main_thread() else None


@lru_cache(maxsize=1)
def _math_parse() -> tuple[Any, list[Any]]:
    try:
        from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse
    except ImportError as exc:  # a core dependency: only a broken install gets here
        raise DistillpipeError(
            "the reference filter needs math-verify: pip install 'math-verify>=0.7'"
        ) from exc
    logging.getLogger("math_verify").setLevel(logging.ERROR)  # "timeout disabled" notes
    return parse, [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]


@lru_cache(maxsize=1)
def _math_verify() -> Any:
    _math_parse()
    from math_verify import verify

    return verify
