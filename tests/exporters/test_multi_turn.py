"""Every built-in export format's row for a multi-turn record."""

import pytest

from distillpipe.config import ExportConfig
from distillpipe.exporters.formats import exporter_named
from distillpipe.exporters.multi_turn import conversation_messages

SYSTEM = {"role": "system", "content": "Be brief."}
TURNS = [
    {"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."},
    {"role": "user", "content": "Why?"}, {"role": "assistant", "content": "Because."},
]  # fmt: skip
RECORD = {"id": "c", "instruction": "Hi?", "messages": [SYSTEM, *TURNS]}


def row(format: str, conversational: bool = True, system_prompt: bool = True) -> dict | None:
    section = ExportConfig(format=format, conversational=conversational)
    messages = conversation_messages(RECORD, system_prompt)
    return exporter_named(format).conversation_row(messages, section)


def test_messages_and_sharegpt_hold_the_whole_conversation():
    assert row("messages") == {"messages": [SYSTEM, *TURNS]}
    assert row("messages", system_prompt=False) == {"messages": TURNS}
    assert row("sharegpt")["conversations"] == [
        {"from": "system", "value": "Be brief."},
        {"from": "human", "value": "Hi?"}, {"from": "gpt", "value": "Hello."},
        {"from": "human", "value": "Why?"}, {"from": "gpt", "value": "Because."},
    ]  # fmt: skip


def test_prompt_completion_completes_the_last_answer():
    assert row("prompt-completion") == {"prompt": [SYSTEM, *TURNS[:3]], "completion": TURNS[3:]}
    assert row("prompt-completion", conversational=False) == {
        "prompt": "System: Be brief.\n\nUser: Hi?\n\nAssistant: Hello.\n\nUser: Why?",
        "completion": "Because.",
    }


def test_alpaca_keeps_the_earlier_exchanges_as_history():
    assert row("alpaca") == {
        "instruction": "Why?", "input": "", "output": "Because.",
        "history": [["Hi?", "Hello."]], "system": "Be brief.",
    }  # fmt: skip


def test_dpo_has_no_row_for_a_conversation():
    assert row("dpo") is None


def test_an_unanswered_last_user_turn_is_left_out():
    record = {**RECORD, "messages": [*TURNS, {"role": "user", "content": "And?"}]}
    assert conversation_messages(record, True) == TURNS


@pytest.mark.parametrize(
    "messages", [TURNS[:1], [*TURNS[:1], {"role": "assistant", "content": " "}]]
)
def test_a_conversation_with_no_answer_gives_no_messages(messages: list):
    assert conversation_messages({**RECORD, "messages": messages}, True) is None
