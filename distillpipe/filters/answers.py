"""Final-answer extraction and normalisation for self-consistency voting.

Looks, in order, for the last ``\\boxed{...}`` (braces matched), GSM8K's
``#### 42``, "the (final) answer is ...", an "Answer: ..." line, and finally
the last number in the text. A multiple-choice letter is recognised in any of
those places. Numbers normalise to one spelling, so 1,000 = 1000.0 = 1e3 and
1/2 = 0.5 = \\frac{1}{2}.
"""

from __future__ import annotations

import re
from fractions import Fraction

_ANSWER_IS = re.compile(
    r"(?:final answer|the answer|answer)\s*(?:is|:|=)\s*[:\s]*(.+?)(?:\n|$|(?<=[^\d])\.(?:\s|$))",
    re.IGNORECASE,
)
_ANSWER_LINE = re.compile(r"^\s*(?:\*\*)?answer(?:\*\*)?\s*[:：]\s*(.+)$", re.IGNORECASE | re.M)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?|-?\.\d+")
_CHOICE = re.compile(r"^\(?([A-Ea-e])\)?(?:[.:)]|\s|$)")
_LATEX_NOISE = re.compile(r"\\[,!;: ]|\\left|\\right|\\displaystyle|\$")
_TEXT = re.compile(r"\\(?:text|mathrm|textbf|mathbf)\{([^{}]*)\}")
_FRAC = re.compile(r"^\\d?frac\{(-?\d+)\}\{(-?\d+)\}$")
_GROUPED = re.compile(r"^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_NUMBER_WITH_UNIT = re.compile(r"^([$€£]?-?[\d.,/eE]+%?)\s+[^\W\d]+(?:\s+[^\W\d]+)*$")


def last_boxed(text: str) -> str | None:
    """The content of the last \\boxed{...} or \\fbox{...}, nested braces matched."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    position = text.index("{", start) + 1
    depth, begin = 1, position
    while position < len(text):
        if text[position] == "{":
            depth += 1
        elif text[position] == "}":
            depth -= 1
            if depth == 0:
                return text[begin:position]
        position += 1
    return None


def after_hashes(text: str) -> str | None:
    """GSM8K's final answer: what follows the last ``####`` (to the end of its line)."""
    position = text.rfind("####")
    if position < 0:
        return None
    tail = text[position + 4 :].strip().splitlines()
    return tail[0].strip() if tail and tail[0].strip() else None


def extract_raw_answer(text: str) -> str | None:
    """The final answer a response gives, as written; None when it gives none."""
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed
    hashes = after_hashes(text)
    if hashes is not None:
        return hashes
    found = _ANSWER_IS.findall(text) or _ANSWER_LINE.findall(text)
    if found:
        return found[-1]
    numbers = _NUMBER.findall(text)
    if numbers:
        return numbers[-1]
    return None


def extract_answer(text: str) -> str | None:
    """The final answer a response gives, normalised; None when it gives none."""
    raw = extract_raw_answer(text)
    return None if raw is None else normalise_answer(raw)


def normalise_answer(raw: str) -> str | None:
    text = _TEXT.sub(r"\1", raw).replace("\\%", "%")
    text = _LATEX_NOISE.sub("", text).strip().strip("*").strip()
    text = text.rstrip(".").strip()
    if not text:
        return None
    choice = _CHOICE.match(text)
    if choice and (len(text) <= 3 or not text[1:2].isalpha()):
        return choice.group(1).upper()
    number = as_number(text)
    if number is not None:
        return number
    with_unit = _NUMBER_WITH_UNIT.match(text)  # "3.50 dollars", "12 apples"
    if with_unit and (number := as_number(with_unit.group(1))) is not None:
        return number
    return re.sub(r"\s+", " ", text.lower())


def as_number(text: str) -> str | None:
    """A canonical spelling of a number, or None when ``text`` is not one."""
    text = text.replace(" ", "").rstrip("%")
    for prefix in ("$", "€", "£"):
        text = text.removeprefix(prefix)
    fraction = _FRAC.match(text)
    if fraction:
        numerator, denominator = int(fraction.group(1)), int(fraction.group(2))
        return _canonical(Fraction(numerator, denominator)) if denominator else None
    if "," in text:
        if not _GROUPED.match(text):
            return None
        text = text.replace(",", "")
    try:
        if "/" in text:
            numerator, _, denominator = text.partition("/")
            return _canonical(Fraction(int(numerator), int(denominator)))
        return _canonical(Fraction(text))
    except (ValueError, ZeroDivisionError):
        return None


def _canonical(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    return format(float(value), ".12g")
