"""One function per export format, each producing exactly the row its consumers read.

messages           {"messages": [{role, content}, ...]}          TRL SFTTrainer, OpenAI
sharegpt           {"conversations": [{from, value}, ...]}       axolotl, LLaMA-Factory
alpaca             {"instruction", "input", "output"[, "system"]}
prompt-completion  {"prompt", "completion"}                      TRL (strings or message lists)
dpo                {"prompt", "chosen", "rejected"}              TRL DPOTrainer, explicit prompt
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

    @property
    def user(self) -> str:
        return f"{self.instruction}\n\n{self.input}" if self.input else self.instruction


def _prompt_messages(example: Example) -> list[dict[str, str]]:
    system = [{"role": "system", "content": example.system}] if example.system else []
    return [*system, {"role": "user", "content": example.user}]


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def _prompt_text(example: Example) -> str:
    return f"{example.system}\n\n{example.user}" if example.system else example.user


def messages(example: Example, conversational: bool = True) -> Row:
    return {"messages": _prompt_messages(example) + _assistant(example.response)}


def sharegpt(example: Example, conversational: bool = True) -> Row:
    turns = [{"from": "system", "value": example.system}] if example.system else []
    turns += [{"from": "human", "value": example.user}, {"from": "gpt", "value": example.response}]
    return {"conversations": turns}


def alpaca(example: Example, conversational: bool = True) -> Row:
    row: Row = {"instruction": example.instruction, "input": example.input}
    row["output"] = example.response
    if example.system:
        row["system"] = example.system
    return row


def prompt_completion(example: Example, conversational: bool = True) -> Row:
    if conversational:
        return {"prompt": _prompt_messages(example), "completion": _assistant(example.response)}
    return {"prompt": _prompt_text(example), "completion": example.response}


def dpo(example: Example, conversational: bool = True) -> Row:
    if example.rejected is None:
        raise ValueError("a DPO row needs a rejected response")
    if conversational:
        return {
            "prompt": _prompt_messages(example),
            "chosen": _assistant(example.response),
            "rejected": _assistant(example.rejected),
        }
    prompt = _prompt_text(example)
    return {"prompt": prompt, "chosen": example.response, "rejected": example.rejected}


FORMATS: dict[str, Callable[[Example, bool], Row]] = {
    "messages": messages,
    "sharegpt": sharegpt,
    "alpaca": alpaca,
    "prompt-completion": prompt_completion,
    "dpo": dpo,
}
PREFERENCE_FORMATS = frozenset({"dpo"})
