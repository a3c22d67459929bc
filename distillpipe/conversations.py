"""Multi-turn records (``messages`` and ``conversation``) seen as single-turn ones.

Filters and other single-turn readers judge a conversation through *views*:
records shaped like any other (``instruction`` and one response), one per
assistant turn (``each``: the user turn before it and its answer) or one for the
whole conversation (``whole``: every user turn, and every answer, joined).
"""

from __future__ import annotations

from typing import Any, Literal

from distillpipe.io import NumberedRecord, input_line

Record = dict[str, Any]
TurnScope = Literal["each", "whole"]
JOINER = "\n\n"


def is_conversation(record: Record) -> bool:
    return bool(record.get("messages"))


def assistant_responses(record: Record) -> list[dict[str, Any]]:
    """Each assistant turn as a ``responses[]`` entry (text, model, usage, ..., ``turn``)."""
    metas = (record.get("conversation") or {}).get("assistant") or []
    answers = [m for m in record.get("messages") or [] if m.get("role") == "assistant"]
    responses = []
    for turn, message in enumerate(answers):
        meta = metas[turn] if turn < len(metas) else {}
        responses.append({**meta, "text": message["content"], "sample": 0, "turn": turn})
    return responses


def _exchanges(record: Record) -> list[tuple[str, dict[str, Any]]]:
    """(the user turn, the answer to it) for every answered user turn."""
    answers = iter(assistant_responses(record))
    exchanges, user = [], None
    for message in record.get("messages") or []:
        if message.get("role") == "user":
            user = message["content"]
        elif message.get("role") == "assistant" and user is not None:
            exchanges.append((user, next(answers)))
            user = None
    return exchanges


def turn_views(record: Record, scope: TurnScope) -> list[Record]:
    """The single-turn records a filter judges in place of the conversation."""
    base = {k: v for k, v in record.items() if k not in ("messages", "input", "selection")}
    line = input_line(record)

    def view(instruction: str, answer: dict[str, Any]) -> Record:
        shaped = {**base, "instruction": instruction, "responses": [answer]}
        return shaped if line is None else NumberedRecord(shaped, line)  # dedup names the line

    exchanges = _exchanges(record)
    if scope == "each":
        return [view(user, answer) for user, answer in exchanges]
    users = JOINER.join(user for user, _ in exchanges)
    answer = {"text": JOINER.join(a["text"] for _, a in exchanges), "sample": 0}
    models = {a.get("model") for _, a in exchanges} - {None}
    if len(models) == 1:
        answer["model"] = models.pop()
    return [view(users, answer)]
