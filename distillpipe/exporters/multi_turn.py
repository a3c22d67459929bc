"""The rows of a multi-turn record (``messages``, from generate's conversation mode).

Each built-in format's ``Exporter.conversation_row`` builds its row from the
conversation's messages (``conversation_messages``) with these:

messages           {"messages": [{role, content}, ...]}: the whole conversation
sharegpt           {"conversations": [{from: system|human|gpt, value}, ...]}
prompt-completion  {"prompt": every turn before the last answer, "completion": the last answer}
                   (message lists, or the turns as "User:/Assistant:" text when not conversational)
alpaca             {"instruction", "input": "", "output"} of the last exchange, the earlier
                   exchanges as ``history: [[user, assistant], ...]`` (LLaMA-Factory's field)

A conversation carries no preference pair: dpo has no row for it, and the export
skips it with a reason, as it does any format without ``conversation_row``.
"""

from __future__ import annotations

from typing import Any

Row = dict[str, Any]
Message = dict[str, str]

NO_ANSWER = "the conversation has no assistant turn"
SHAREGPT_ROLES = {"system": "system", "user": "human", "assistant": "gpt"}


def no_row(format: str) -> str:
    return f"format {format} has no row for a conversation"


def conversation_messages(record: dict[str, Any], system_prompt: bool) -> list[Message] | None:
    """role and content of each message (the system message only when exported), up to
    the last answer; None when no turn was answered."""
    messages = [
        {"role": m["role"], "content": m["content"]}
        for m in record.get("messages") or []
        if system_prompt or m["role"] != "system"
    ]
    if not any(m["role"] == "assistant" and m["content"].strip() for m in messages):
        return None
    while messages[-1]["role"] != "assistant":  # a turn the conversation ended on unanswered
        messages.pop()
    return messages


def sharegpt_turns(messages: list[Message]) -> list[dict[str, str]]:
    return [{"from": SHAREGPT_ROLES[m["role"]], "value": m["content"]} for m in messages]


def transcript(messages: list[Message]) -> str:
    labels = {"system": "System", "user": "User", "assistant": "Assistant"}
    return "\n\n".join(f"{labels[m['role']]}: {m['content']}" for m in messages)


def prompt_completion_row(messages: list[Message], conversational: bool) -> Row:
    prompt, completion = messages[:-1], messages[-1:]
    if conversational:
        return {"prompt": prompt, "completion": completion}
    return {"prompt": transcript(prompt), "completion": completion[0]["content"]}


def alpaca_row(messages: list[Message]) -> Row:
    system = [m["content"] for m in messages if m["role"] == "system"]
    turns = [m["content"] for m in messages if m["role"] != "system"]
    pairs = [turns[i : i + 2] for i in range(0, len(turns) - 1, 2)]
    row: Row = {"instruction": pairs[-1][0], "input": "", "output": pairs[-1][1]}
    row["history"] = pairs[:-1]
    if system:
        row["system"] = system[0]
    return row
