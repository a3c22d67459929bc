"""One function per export format, each producing exactly the row its consumers read.

messages           {"messages": [{role, content}, ...]}          TRL SFTTrainer, OpenAI
sharegpt           {"conversations": [{from, value}, ...]}       axolotl, LLaMA-Factory
alpaca             {"instruction", "input", "output"[, "system"]}
prompt-completion  {"prompt", "completion"}                      TRL (strings or message lists)
dpo                {"prompt", "chosen", "rejected"}              TRL DPOTrainer, explicit prompt

A reasoning trace is laid out by ``exporters/reasoning.py`` (inline in the text, or
as ``reasoning_content`` / a ``reasoning`` column here).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Row = dict[str, Any]


@dataclass(slots=True)
class Example:
    """One exported example: what the teacher was asked, and the answer(s) kept."""

    system: str | None
    instruction: str
    input: str
    response: str
    rejected: str | None = None
    reasoning: str | None = None
    """The trace of ``response`` to write beside it (``export.reasoning: field``)."""
    rejected_reasoning: str | None = None

    @property
    def user(self) -> str:
        return f"{self.instruction}\n\n{self.input}" if self.input else self.instruction


def _prompt_messages(example: Example) -> list[dict[str, str]]:
    system = [{"role": "system", "content": example.system}] if example.system else []
    return [*system, {"role": "user", "content": example.user}]


def _assistant(text: str, reasoning: str | None = None) -> list[dict[str, str]]:
    if reasoning is not None:
        return [{"role": "assistant", "content": text, "reasoning_content": reasoning}]
    return [{"role": "assistant", "content": text}]


def _with_trace(row: Row, reasoning: str | None, column: str = "reasoning") -> Row:
    """A string format's trace as its own column (``export.reasoning: field``)."""
    return {**row, column: reasoning} if reasoning is not None else row


def _prompt_text(example: Example) -> str:
    return f"{example.system}\n\n{example.user}" if example.system else example.user


def messages(example: Example, conversational: bool = True) -> Row:
    assistant = _assistant(example.response, example.reasoning)
    return {"messages": _prompt_messages(example) + assistant}


def sharegpt(example: Example, conversational: bool = True) -> Row:
    turns = [{"from": "system", "value": example.system}] if example.system else []
    turns += [{"from": "human", "value": example.user}, {"from": "gpt", "value": example.response}]
    return _with_trace({"conversations": turns}, example.reasoning)


def alpaca(example: Example, conversational: bool = True) -> Row:
    row: Row = {"instruction": example.instruction, "input": example.input}
    row["output"] = example.response
    if example.system:
        row["system"] = example.system
    return _with_trace(row, example.reasoning)


def prompt_completion(example: Example, conversational: bool = True) -> Row:
    if conversational:
        completion = _assistant(example.response, example.reasoning)
        return {"prompt": _prompt_messages(example), "completion": completion}
    row = {"prompt": _prompt_text(example), "completion": example.response}
    return _with_trace(row, example.reasoning)


def dpo(example: Example, conversational: bool = True) -> Row:
    if example.rejected is None:
        raise ValueError("a DPO row needs a rejected response")
    if conversational:
        return {
            "prompt": _prompt_messages(example),
            "chosen": _assistant(example.response, example.reasoning),
            "rejected": _assistant(example.rejected, example.rejected_reasoning),
        }
    prompt = _prompt_text(example)
    row = {"prompt": prompt, "chosen": example.response, "rejected": example.rejected}
    row = _with_trace(row, example.reasoning, "chosen_reasoning")
    return _with_trace(row, example.rejected_reasoning, "rejected_reasoning")


FORMATS: dict[str, Callable[[Example, bool], Row]] = {
    "messages": messages,
    "sharegpt": sharegpt,
    "alpaca": alpaca,
    "prompt-completion": prompt_completion,
    "dpo": dpo,
}
PREFERENCE_FORMATS = frozenset({"dpo"})
