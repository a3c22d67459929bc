"""One exporter per ``export.format``, each producing exactly the row its consumers read.

messages           {"messages": [{role, content}, ...]}          TRL SFTTrainer, OpenAI
sharegpt           {"conversations": [{from, value}, ...]}       axolotl, LLaMA-Factory
alpaca             {"instruction", "input", "output"[, "system"]}
prompt-completion  {"prompt", "completion"}                      TRL (strings or message lists)
dpo                {"prompt", "chosen", "rejected"}              TRL DPOTrainer, explicit prompt
extraction         {"input", "output": parsed JSON}              structured extraction

Exporters register under the entry-point group ``distillpipe.exporters`` (the
entry point's name is the format's name), the built-ins like third-party ones.
A reasoning trace is laid out by ``exporters/reasoning.py`` (inline in the text, or
as ``reasoning_content`` / a ``reasoning`` column here).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from distillpipe import registry
from distillpipe.exporters import multi_turn
from distillpipe.registry import load_plugin

if TYPE_CHECKING:
    from distillpipe.config import ExportConfig

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
    parsed: Any = None
    """The answer's JSON (``responses[].parsed``) where ``structured``."""
    structured: bool = False

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


class Exporter(ABC):
    """An ``export.format``: the training row of each example a record gives."""

    pairs: ClassVar[bool] = False
    """Rows from a record's (chosen, rejected) pair (the filter stage's selection; records
    without one are skipped), with no logprobs sidecar or reference rows. Otherwise one row
    per kept sample (``export.responses``)."""

    needs_parsed: ClassVar[bool] = False
    """Rows from parsed answers only (the format filter's ``responses[].parsed``); other
    samples are skipped and counted."""

    @abstractmethod
    def row(self, example: Example, record: dict[str, Any], section: ExportConfig) -> Row:
        """The row of one example; ``record`` is the record it came from."""

    def conversation_row(self, messages: list[dict[str, str]], section: ExportConfig) -> Row | None:
        """The row of a whole conversation (a record with ``messages``; ``multi_turn.py``),
        given its messages up to the last answer; None: this format has none."""
        return None


def exporter_named(name: str) -> Exporter:
    """The exporter of format ``name``, from the ``distillpipe.exporters`` entry points."""
    return load_plugin(registry.EXPORTERS, name, f"format {name!r} unknown")()


class MessagesExporter(Exporter):
    def row(self, example: Example, record: dict[str, Any], section: ExportConfig) -> Row:
        assistant = _assistant(example.response, example.reasoning)
        return {"messages": _prompt_messages(example) + assistant}

    def conversation_row(self, messages: list[dict[str, str]], section: ExportConfig) -> Row:
        return {"messages": messages}


class ShareGptExporter(Exporter):
    def row(self, example: Example, record: dict[str, Any], section: ExportConfig) -> Row:
        turns = [{"from": "system", "value": example.system}] if example.system else []
        turns += [
            {"from": "human", "value": example.user},
            {"from": "gpt", "value": example.response},
        ]
        return _with_trace({"conversations": turns}, example.reasoning)

    def conversation_row(self, messages: list[dict[str, str]], section: ExportConfig) -> Row:
        return {"conversations": multi_turn.sharegpt_turns(messages)}


class AlpacaExporter(Exporter):
    def row(self, example: Example, record: dict[str, Any], section: ExportConfig) -> Row:
        row: Row = {"instruction": example.instruction, "input": example.input}
        row["output"] = example.response
        if example.system:
            row["system"] = example.system
        return _with_trace(row, example.reasoning)

    def conversation_row(self, messages: list[dict[str, str]], section: ExportConfig) -> Row:
        return multi_turn.alpaca_row(messages)


class PromptCompletionExporter(Exporter):
    def row(self, example: Example, record: dict[str, Any], section: ExportConfig) -> Row:
        if section.conversational:
            completion = _assistant(example.response, example.reasoning)
            return {"prompt": _prompt_messages(example), "completion": completion}
        row = {"prompt": _prompt_text(example), "completion": example.response}
        return _with_trace(row, example.reasoning)

    def conversation_row(self, messages: list[dict[str, str]], section: ExportConfig) -> Row:
        return multi_turn.prompt_completion_row(messages, section.conversational)


class DpoExporter(Exporter):
    pairs: ClassVar[bool] = True

    def row(self, example: Example, record: dict[str, Any], section: ExportConfig) -> Row:
        if example.rejected is None:
            raise ValueError("a DPO row needs a rejected response")
        if section.conversational:
            return {
                "prompt": _prompt_messages(example),
                "chosen": _assistant(example.response, example.reasoning),
                "rejected": _assistant(example.rejected, example.rejected_reasoning),
            }
        prompt = _prompt_text(example)
        row = {"prompt": prompt, "chosen": example.response, "rejected": example.rejected}
        row = _with_trace(row, example.reasoning, "chosen_reasoning")
        return _with_trace(row, example.rejected_reasoning, "rejected_reasoning")


class ExtractionExporter(Exporter):
    """``{"input": the user turn, "output": the parsed JSON}``: a structured-extraction set."""

    needs_parsed: ClassVar[bool] = True

    def row(self, example: Example, record: dict[str, Any], section: ExportConfig) -> Row:
        return {"input": example.user, "output": example.parsed}
