"""A conversation as single-turn views: per assistant turn, or the whole."""

from distillpipe.conversations import assistant_responses, turn_views

RECORD = {
    "id": "c", "instruction": "Hi?", "meta": {"k": 1},
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Why?"}, {"role": "assistant", "content": "Because."},
    ],
    "conversation": {"assistant": [{"model": "m", "finish_reason": "stop", "usage": {}}] * 2},
}  # fmt: skip


def test_each_assistant_turn_is_a_response_with_its_turn_and_metadata():
    responses = assistant_responses(RECORD)
    assert [(r["text"], r["turn"], r["model"]) for r in responses] == [
        ("Hello.", 0, "m"),
        ("Because.", 1, "m"),
    ]


def test_views_pair_each_answer_with_the_user_turn_before_it():
    first, second = turn_views(RECORD, "each")
    assert (first["instruction"], first["responses"][0]["text"]) == ("Hi?", "Hello.")
    assert (second["instruction"], second["responses"][0]["text"]) == ("Why?", "Because.")
    assert "messages" not in first and first["meta"] == {"k": 1} and first["id"] == "c"


def test_the_whole_view_joins_every_turn():
    (whole,) = turn_views(RECORD, "whole")
    assert whole["instruction"] == "Hi?\n\nWhy?"
    assert whole["responses"] == [{"text": "Hello.\n\nBecause.", "sample": 0, "model": "m"}]
