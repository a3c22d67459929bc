"""Cheap checks on every response: refusal and boilerplate phrases, empty or
whitespace-only text, a response that only repeats the instruction, and a
configurable regex blocklist. The phrase list is ``prompts/filters/refusals.txt``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, ClassVar

import ahocorasick_rs
from pydantic import Field, field_validator

from distillpipe.filters.base import (
    Filter,
    FilterOptions,
    Record,
    ResponseScope,
    Verdict,
    responses_in_scope,
)
from distillpipe.prompts import prompts_for


class HeuristicsOptions(FilterOptions):
    type: str = "heuristics"
    refusals: bool = Field(True, description="reject refusal/boilerplate phrases")
    phrases: list[str] = Field(default_factory=list, description="more phrases (case-insensitive)")
    empty: bool = Field(True, description="reject empty or whitespace-only responses")
    repeats_instruction: bool = Field(True, description="reject a response that echoes the prompt")
    blocklist: list[str] = Field(default_factory=list, description="regexes (Python syntax)")
    responses: ResponseScope = Field("all", description="check every response, or the primary")

    @field_validator("blocklist")
    @classmethod
    def _compiles(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid regex {pattern!r}: {exc}") from None
        return patterns


class HeuristicsFilter(Filter):
    type: ClassVar[str] = "heuristics"
    Options = HeuristicsOptions
    options: HeuristicsOptions

    def __init__(self, options: FilterOptions, config: Any = None) -> None:
        super().__init__(options, config)
        phrases = []
        if self.options.refusals:
            phrases += prompts_for(config).lines("filters/refusals.txt")
        phrases += self.options.phrases
        # One Aho-Corasick pass over the lower-cased text finds the leftmost phrase:
        # ~5x faster than a str.find per phrase, far faster than a regex alternation.
        self.phrases = tuple(dict.fromkeys(p.strip().lower() for p in phrases if p.strip()))
        self._automaton = (
            ahocorasick_rs.AhoCorasick(
                self.phrases, matchkind=ahocorasick_rs.MatchKind.LeftmostFirst
            )
            if self.phrases
            else None
        )
        self.blocklist = (
            re.compile("|".join(f"(?:{p})" for p in self.options.blocklist))
            if self.options.blocklist
            else None
        )

    def score(self, records: Sequence[Record]) -> list[Any]:
        return [self._problems(record) for record in records]

    def _problems(self, record: Record) -> list[str]:
        options = self.options
        instruction = record["instruction"]
        problems = []
        for index, response in responses_in_scope(record, options.responses):
            text = response.get("text") or ""
            if options.empty and (not text or text.isspace()):
                problems.append(f"response {index} is empty")
                continue
            lowered = text.lower()
            if found := self._phrase_in(text, lowered):
                problems.append(f"response {index} has refusal phrase {found!r}")
            if self.blocklist is not None and (found := self.blocklist.search(text)):
                problems.append(f"response {index} matches blocklist {found.group(0)!r}")
            if options.repeats_instruction and _echoes(lowered, instruction):
                problems.append(f"response {index} repeats the instruction")
        return problems

    def _phrase_in(self, text: str, lowered: str) -> str | None:
        """The earliest listed phrase in the text, as the text spells it."""
        if self._automaton is None:
            return None
        matches = self._automaton.find_matches_as_indexes(lowered)
        if not matches:
            return None
        index, at, _ = matches[0]
        phrase = self.phrases[index]
        # lower() keeps lengths for the scripts phrases are written in
        return text[at : at + len(phrase)] if len(lowered) == len(text) else phrase

    def value(self, score: Any) -> float:
        return float(len(score))

    def decide(self, record: Record, score: Any) -> Verdict:
        if score:
            return Verdict.rejected("; ".join(score), len(score))
        return Verdict.kept(0)


def _echoes(response: str, instruction: str) -> bool:
    """The response (lower-cased) is the instruction, or the instruction with a few
    characters tacked on; whitespace is collapsed only when the lengths are close."""
    if not instruction or len(response) > 2 * len(instruction) + 16:
        return False
    if response.lstrip()[:1] != instruction.lstrip()[:1].lower():  # cheap, and usually decides
        return False
    stripped = " ".join(response.split()).rstrip(" .?!:")
    target = " ".join(instruction.lower().split()).rstrip(" .?!:")
    if not target:
        return False
    return stripped == target or (stripped.startswith(target) and len(stripped) - len(target) <= 3)
