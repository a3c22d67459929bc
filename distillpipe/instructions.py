"""Read numbered task lists out of teacher completions and screen the candidates.

A model asked to continue a numbered list writes all sorts of things: items
numbered ``10.``, ``10)``, ``Task 10:`` or ``**10.**``, markdown bullets,
labelled ``Input:``/``Output:`` lines, a chatty preface, a last item cut off
by the token limit. :func:`parse_tasks` takes what is usable out of that;
:class:`CandidateChecks` applies Self-Instruct's cheap rejections (length,
keyword blacklist, banned prefixes, a first character that is punctuation or
not ASCII).
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

from distillpipe.prompts import PACKAGED, Prompts

_ITEM = re.compile(
    r"^[ \t]*(?:[-*>#]+[ \t]*)?(?:\*\*|__)?(?:task|item|instruction)?[ \t]*#?(\d{1,3})"
    r"[ \t]*(?:\*\*|__)?[ \t]*[.):](?:\*\*|__)?[ \t]*",
    re.IGNORECASE | re.MULTILINE,
)
_LABEL = re.compile(
    r"^[ \t]*(?:[-*]+[ \t]*)?(?:\*\*|__)?(instruction|task|input|output)"
    r"(?:\*\*|__)?[ \t]*:(?:\*\*|__)?",
    re.IGNORECASE | re.MULTILINE,
)
_NO_INPUT = {"", "<noinput>", "noinput", "<no input>", "no input", "none", "n/a", "na", "-"}
_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class Task:
    instruction: str
    input: str = ""
    output: str = ""


def _clean(text: str) -> str:
    text = _WHITESPACE.sub(" ", text.replace("**", "")).strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'`":
        text = text[1:-1].strip()
    return text


def _split_labels(body: str) -> Task | None:
    parts: dict[str, str] = {}
    labels = list(_LABEL.finditer(body))
    head = body[: labels[0].start()] if labels else body
    parts["instruction"] = head
    for number, label in enumerate(labels):
        end = labels[number + 1].start() if number + 1 < len(labels) else len(body)
        name, segment = label.group(1).lower(), body[label.end() : end]
        name = "instruction" if name == "task" else name
        if name != "instruction":
            parts.setdefault(name, segment)
        elif not _clean(parts["instruction"]):  # "9. Instruction: ..." labels the task itself
            parts["instruction"] = segment
    instruction = _clean(parts["instruction"])
    if not instruction:
        return None
    instruction = instruction[0].upper() + instruction[1:]
    task_input = _clean(parts.get("input", ""))
    if task_input.lower() in _NO_INPUT:
        task_input = ""
    return Task(instruction, task_input, _clean(parts.get("output", "")))


def parse_tasks(text: str, *, leading_item: bool, truncated: bool) -> list[Task]:
    """Every numbered task in ``text``, in order.

    ``leading_item``: the text before the first number is itself a task (a
    completion-mode prompt ends at the next number, so the model starts mid-item);
    otherwise it is a preface and skipped. ``truncated``: the completion hit the
    token limit, so its last item is dropped whole.
    """
    starts = list(_ITEM.finditer(text))
    bodies = [text[: starts[0].start()] if starts else text] if leading_item else []
    for number, match in enumerate(starts):
        end = starts[number + 1].start() if number + 1 < len(starts) else len(text)
        bodies.append(text[match.end() : end])
    if truncated and bodies:
        bodies.pop()
    tasks = [_split_labels(body) for body in bodies]
    return [task for task in tasks if task is not None]


def normalised(text: str) -> str:
    """The form exact duplicates are compared in."""
    return _WHITESPACE.sub(" ", text).strip().lower()


class CandidateChecks:
    """Self-Instruct's cheap rejections; ``verdict`` gives ``(filter, reason)`` or None."""

    def __init__(
        self,
        *,
        min_words: int,
        max_words: int,
        blacklist: list[str] | None,
        reject_prefixes: list[str],
        prompts: Prompts = PACKAGED,
    ) -> None:
        words = blacklist if blacklist is not None else prompts.lines("self_instruct/blacklist.txt")
        self.min_words, self.max_words = min_words, max_words
        alternatives = "|".join(re.escape(word.lower()) for word in words if word.strip())
        self._blacklist = re.compile(rf"\b({alternatives})\b") if alternatives else None
        self._prefixes = tuple(prefix.lower() for prefix in reject_prefixes)

    def verdict(self, instruction: str) -> tuple[str, str] | None:
        count = len(instruction.split())
        if count < self.min_words:
            return "length", f"too short: {count} words (minimum {self.min_words})"
        if count > self.max_words:
            return "length", f"too long: {count} words (maximum {self.max_words})"
        lowered = instruction.lower()
        if self._blacklist and (hit := self._blacklist.search(lowered)):
            return "blacklist", f"mentions {hit.group(1)!r}, which a text-only model cannot do"
        for prefix in self._prefixes:
            if lowered.startswith(prefix):
                return "prefix", f"starts with {prefix!r}"
        first = instruction[0]
        if first in string.punctuation:
            return "format", f"starts with punctuation {first!r}"
        if not first.isascii():
            return "format", f"starts with a non-ASCII character {first!r}"
        return None


def stop_sequences(name: str, prompts: Prompts = PACKAGED) -> tuple[str, ...]:
    """A prompt folder's stop file: one stop a line, ``\\n`` for a newline, ``#`` comments."""
    return tuple(
        line.replace("\\n", "\n")
        for line in prompts.text(name).splitlines()
        if line.strip() and not line.startswith("#")
    )
