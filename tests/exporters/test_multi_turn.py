"""Every export format's row for a multi-turn record."""

import pytest

from distillpipe.exporters.multi_turn import NO_ANSWER, NO_PAIR, conversation_row

SYSTEM = {"role": "system", "content": "Be brief."}
TURNS = [
    {"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."},
    {"role": "user", "content": "Why?"}, {"role": "assistant", "content": "Because."},
]  # fmt: skip
RECORD = {"id": "c", "instruction": "Hi?", "messages": [SYSTEM, *TURNS]}


def row(format: str, conversational: bool = True, system_prompt: bool = True) -> dict:
    out, reason = conversation_row(RECORD, format, conversational, system_prompt)
    assert reason is None
    return out


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
    text = row("prompt-completion", conversational=False)
    assert text == {
        "prompt": "System: Be brief.\n\nUser: Hi?\n\nAssistant: Hello.\n\nUser: Why?",
        "completion": "Because.",
    }


def test_alpaca_keeps_the_earlier_exchanges_as_history():
    assert row("alpaca") == {
        "instruction": "Why?", "input": "", "output": "Because.",
        "history": [["Hi?", "Hello."]], "system": "Be brief.",
    }  # fmt: skip


def test_an_unanswered_last_user_turn_is_left_out():
    record = {**RECORD, "messages": [*TURNS, {"role": "user", "content": "And?"}]}
    assert conversation_row(record, "messages", True, True)[0] == {"messages": TURNS}


@pytest.mark.parametrize(
    ("record", "format", "reason"),
    [(RECORD, "dpo", NO_PAIR), ({**RECORD, "messages": TURNS[:1]}, "messages", NO_ANSWER)],
)
def test_what_gives_no_row_says_why(record: dict, format: str, reason: str):
    assert conversation_row(record, format, True, True) == (None, reason)
