"""One parser from every wire shape of a reasoning teacher to (reasoning, answer).

Where the trace arrives:

- OpenAI-compatible servers with a reasoning parser (vLLM, SGLang, DeepSeek's
  API) put it in ``message.reasoning_content``; other gateways in
  ``message.reasoning`` (:func:`from_openai_message`);
- Anthropic sends ``thinking`` blocks (with a ``signature``, needed to replay the
  trace in a later turn) and ``redacted_thinking`` blocks (encrypted: no text)
  before the ``text`` blocks (:func:`from_anthropic_blocks`);
- everything else (the in-process llama.cpp and vLLM backends, a server without
  a reasoning parser, a completion prompt that opened the block itself) writes it
  inline: ``<think>…</think>`` then the answer, or only ``…</think>`` then the
  answer when the prompt held the opening tag (:func:`split_inline`, tags
  configurable under ``teacher.reasoning.tags``).

The cache keeps what the wire said: the structured trace in its own field, the
content as it came (inline tags and all). The inline split happens when a
completion is read (``Completion.read``, which the ``Dispatcher`` applies to every
completion it hands out, cached or new), so the raw text stays recoverable and
changing the tags re-splits cached answers without asking the teacher again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ReasoningKind = Literal["raw", "summary", "redacted", "none"]
REASONING_KINDS: tuple[str, ...] = ("raw", "summary", "redacted", "none")
DEFAULT_TAGS: tuple[tuple[str, str], ...] = (("<think>", "</think>"),)
TRACE_ENCODING = "cl100k_base"  # counts a trace whose tokens the provider did not report


class ReasoningOptions(BaseModel):
    """``teacher.reasoning``: how an inline trace is told from the answer."""

    model_config = ConfigDict(extra="forbid")

    tags: list[tuple[str, str]] = Field(
        default_factory=lambda: list(DEFAULT_TAGS),
        description="(opening, closing) tag pairs of an inline trace, tried in order; "
        "[] leaves the text as it is",
    )
    inline: bool = Field(True, description="split inline traces out of the text")


@dataclass(frozen=True, slots=True)
class Parsed:
    """A reply taken apart: the answer, and the trace with what it is."""

    answer: str
    reasoning: str | None = None
    kind: ReasoningKind = "none"
    blocks: list[dict[str, Any]] | None = field(default=None)
    """Anthropic's thinking blocks as sent (signature, redacted data): what a replay needs."""


def split_inline(text: str, tags: Sequence[Sequence[str]] = DEFAULT_TAGS) -> Parsed:
    """``<think>trace</think>answer`` (or ``trace</think>answer``, the opening tag having
    been in the prompt) as its parts. An opened block never closed is all trace: the
    answer is empty (the sample was cut off while thinking). Text without the tags is
    all answer, untouched."""
    for opening, closing in tags:
        start = text.lstrip()
        if opening and start.startswith(opening):
            body = start[len(opening) :]
            trace, found, answer = body.partition(closing)
            if not found:
                return Parsed("", trace.strip() or None, "raw" if trace.strip() else "none")
            return _parts(trace, answer)
        trace, found, answer = text.partition(closing)
        if found and (not opening or opening not in trace):
            return _parts(trace, answer)
    return Parsed(text)


def _parts(trace: str, answer: str) -> Parsed:
    trace = trace.strip()
    return Parsed(answer.strip(), trace or None, "raw" if trace else "none")


def from_openai_message(message: dict[str, Any]) -> Parsed:
    """A chat message's structured trace (``reasoning_content``, else ``reasoning``);
    the content stays as it came, for the inline split at read time."""
    content = message.get("content") or ""
    for key in ("reasoning_content", "reasoning"):
        trace = message.get(key)
        if isinstance(trace, str) and trace.strip():
            return Parsed(content, trace.strip(), "raw")
    return Parsed(content)


def from_anthropic_blocks(blocks: list[dict[str, Any]], kind: ReasoningKind) -> Parsed:
    """The text blocks as the answer, the thinking blocks as the trace (``kind``: raw
    for the models that show their thinking, summary for those that summarise it);
    only redacted blocks: ``redacted``, no text."""
    answer = "".join(block.get("text", "") for block in blocks if block.get("type") == "text")
    thinking = [block for block in blocks if block.get("type") == "thinking"]
    redacted = [block for block in blocks if block.get("type") == "redacted_thinking"]
    if not thinking and not redacted:
        return Parsed(answer)
    kept = [block for block in blocks if block.get("type") in ("thinking", "redacted_thinking")]
    trace = "\n\n".join(block.get("thinking", "") for block in thinking).strip()
    if not trace:
        return Parsed(answer, None, "redacted" if redacted else "none", kept)
    return Parsed(answer, trace, kind, kept)
