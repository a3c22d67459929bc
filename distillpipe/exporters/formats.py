"""One exporter per ``export.format``, each producing exactly the row its consumers read.

messages           {"messages": [{role, content}, ...]}          TRL SFTTrainer, OpenAI
sharegpt           {"conversations": [{from, value}, ...]}       axolotl, LLaMA-Factory
alpaca             {"instruction", "input", "output"[, "system"]}
prompt-completion  {"prompt", "completion"}                      TRL (strings or message lists)
dpo                {"prompt", "chosen", "rejected"}              TRL DPOTrainer, explicit prompt

Exporters register under the entry-point group ``distillpipe.exporters`` (the
entry point's name is the format's name), the built-ins like third-party ones.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from distillpipe import registry
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


class Exporter(ABC):
    """An ``export.format``: the training row of each example a record gives."""

    pairs: ClassVar[bool] = False
    """Rows from a record's (chosen, rejected) pair (the filter stage's selection; records
    without one are skipped), with no logprobs sidecar or reference rows. Otherwise one row
    per kept sample (``export.responses``)."""

    @abstractmethod
    def row(self, example: Example, record: dict[str, Any], section: ExportConfig) -> Row:
        """The row of one example; ``record`` is the record it came from."""


def exporter_named(name: str) -> Exporter:
    """The exporter of format ``name``, from the ``distillpipe.exporters`` entry points."""
    return load_plugin(registry.EXPORTERS, name, f"format {name!r} unknown")()


class MessagesExporter(Exporter):
    def row(self, example: Example, record: dict[str, Any], section: ExportConfig) -> Row:
        return {"messages": _prompt_messages(example) + _assistant(example.response)}


class ShareGptExporter(Exporter):
    def row(self, example: Example, record: dict[str, Any], section: ExportConfig) -> Row:
        turns = [{"from": "system", "value": example.system}] if example.system else []
        turns += [
            {"from": "human", "value": example.user},
            {"from": "gpt", "value": example.response},
        ]
        return {"conversations": turns}


class AlpacaExporter(Exporter):
    def row(self, example: Example, record: dict[str, Any], section: ExportConfig) -> Row:
        row: Row = {"instruction": example.instruction, "input": example.input}
        row["output"] = example.response
        if example.system:
            row["system"] = example.system
        return row


class PromptCompletionExporter(Exporter):
    def row(self, example: Example, record: dict[str, Any], section: ExportConfig) -> Row:
        if section.conversational:
            return {"prompt": _prompt_messages(example), "completion": _assistant(example.response)}
        return {"prompt": _prompt_text(example), "completion": example.response}


class DpoExporter(Exporter):
    pairs: ClassVar[bool] = True

    def row(self, example: Example, record: dict[str, Any], section: ExportConfig) -> Row:
        if example.rejected is None:
            raise ValueError("a DPO row needs a rejected response")
        if section.conversational:
            return {
                "prompt": _prompt_messages(example),
                "chosen": _assistant(example.response),
                "rejected": _assistant(example.rejected),
            }
        prompt = _prompt_text(example)
        return {"prompt": prompt, "chosen": example.response, "rejected": example.rejected}
