"""Rows of a multi-turn record (``messages``, from generate's conversation mode).

messages           {"messages": [{role, content}, ...]}: the whole conversation
sharegpt           {"conversations": [{from: system|human|gpt, value}, ...]}
prompt-completion  {"prompt": every turn before the last answer, "completion": the last answer}
                   (message lists, or the turns as "User:/Assistant:" text when not conversational)
alpaca             {"instruction", "input": "", "output"} of the last exchange, the earlier
                   exchanges as ``history: [[user, assistant], ...]`` (LLaMA-Factory's field)

A conversation carries no preference pair, so the dpo format skips it with a reason.
"""

from __future__ import annotations

from typing import Any

Row = dict[str, Any]
Message = dict[str, str]

NO_PAIR = "a conversation has no preference pair"
NO_ANSWER = "the conversation has no assistant turn"
SHAREGPT_ROLES = {"system": "system", "user": "human", "assistant": "gpt"}


def plain_messages(record: dict[str, Any], system_prompt: bool) -> list[Message]:
    """role and content of each message; the system message only when exported."""
    return [
        {"role": m["role"], "content": m["content"]}
        for m in record.get("messages") or []
        if system_prompt or m["role"] != "system"
    ]


def _transcript(messages: list[Message]) -> str:
    labels = {"system": "System", "user": "User", "assistant": "Assistant"}
    return "\n\n".join(f"{labels[m['role']]}: {m['content']}" for m in messages)


def conversation_row(
    record: dict[str, Any], format: str, conversational: bool, system_prompt: bool
) -> tuple[Row | None, str | None]:
    """The record's row in ``format``, or why it gives none."""
    messages = plain_messages(record, system_prompt)
    if not any(m["role"] == "assistant" and m["content"].strip() for m in messages):
        return None, NO_ANSWER
    while messages[-1]["role"] != "assistant":  # a turn the conversation ended on unanswered
        messages.pop()
    if format == "messages":
        return {"messages": messages}, None
    if format == "sharegpt":
        turns = [{"from": SHAREGPT_ROLES[m["role"]], "value": m["content"]} for m in messages]
        return {"conversations": turns}, None
    if format == "prompt-completion":
        prompt, completion = messages[:-1], messages[-1:]
        if conversational:
            return {"prompt": prompt, "completion": completion}, None
        return {"prompt": _transcript(prompt), "completion": completion[0]["content"]}, None
    if format == "alpaca":
        system = [m["content"] for m in messages if m["role"] == "system"]
        turns = [m["content"] for m in messages if m["role"] != "system"]
        pairs = [turns[i : i + 2] for i in range(0, len(turns) - 1, 2)]
        row: Row = {"instruction": pairs[-1][0], "input": "", "output": pairs[-1][1]}
        row["history"] = pairs[:-1]
        if system:
            row["system"] = system[0]
        return row, None
    return None, NO_PAIR
