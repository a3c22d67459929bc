"""Filters judge a conversation turn by turn (``turns: each``) or as a whole."""

from __future__ import annotations

from pathlib import Path

import orjson
from support import small_llamacpp_config, write_config

from distillpipe.config import load_config
from distillpipe.io import read_records, write_jsonl
from distillpipe.runner import run_stage
from distillpipe.stages import stage_named


def conversation(record_id: str, answers: list[str]) -> dict:
    messages = []
    for turn, answer in enumerate(answers):
        messages += [
            {"role": "user", "content": f"Question {turn + 1} about the sea?"},
            {"role": "assistant", "content": answer},
        ]
    metas = [{"model": "teacher", "finish_reason": "stop", "usage": {}} for _ in answers]
    return {
        "id": record_id, "instruction": "Question 1 about the sea?", "messages": messages,
        "conversation": {"assistant": metas, "users": [{"source": "input"}]},
    }  # fmt: skip


LONG = "The sea is salty because rivers carry minerals into it."
SINGLE = {
    "id": "single", "instruction": "Why is the sea blue?",
    "responses": [{"text": LONG, "model": "teacher", "sample": 0}],
}  # fmt: skip


def filtered(tmp_path: Path, records: list[dict], **length: object) -> tuple[list, list]:
    data = small_llamacpp_config()
    data["filter"] = [{"type": "length", "response": {"min_words": 4}, **length}]
    config = load_config(write_config(tmp_path / "config.yaml", data))
    write_jsonl(tmp_path / "in.jsonl", records)
    run_stage(
        stage_named("filter"), config, tmp_path / "in.jsonl", tmp_path / "out.jsonl",
        rejected_path=tmp_path / "rejected.jsonl",
    )  # fmt: skip
    rejected = [
        orjson.loads(line) for line in (tmp_path / "rejected.jsonl").read_bytes().splitlines()
    ]
    return list(read_records(tmp_path / "out.jsonl")), rejected


def test_every_assistant_turn_must_pass_and_the_failing_one_is_named(tmp_path: Path):
    records = [conversation("good", [LONG, LONG]), conversation("bad", [LONG, "Yes."]), SINGLE]
    kept, rejected = filtered(tmp_path, records)
    assert [r["id"] for r in kept] == ["good", "single"]
    assert len(kept[0]["scores"]["length"]) == 2  # one score per assistant turn
    assert kept[0]["messages"] == records[0]["messages"]  # the record is kept whole
    (bad,) = rejected
    assert bad["id"] == "bad" and bad["reject"]["reason"].startswith("turn 2: ")
    assert "messages" in bad


def test_the_whole_conversation_can_be_judged_as_one(tmp_path: Path):
    records = [conversation("bad", [LONG, "Yes."])]
    kept, rejected = filtered(tmp_path, records, turns="whole")
    assert [r["id"] for r in kept] == ["bad"] and rejected == []
    assert isinstance(kept[0]["scores"]["length"], dict)  # the one score of the whole


def test_dedup_names_the_line_of_the_conversation_a_turn_repeats(tmp_path: Path):
    data = small_llamacpp_config()
    data["filter"] = [{"type": "dedup"}]
    config = load_config(write_config(tmp_path / "config.yaml", data))
    records = [conversation("one", [LONG, "Fish swim in it."]), conversation("two", [LONG, LONG])]
    write_jsonl(tmp_path / "in.jsonl", records)
    run_stage(
        stage_named("filter"), config, tmp_path / "in.jsonl", tmp_path / "out.jsonl",
        rejected_path=tmp_path / "rejected.jsonl",
    )  # fmt: skip
    (rejected,) = read_records(tmp_path / "rejected.jsonl")
    assert rejected["id"] == "two" and rejected["reject"]["reason"].startswith("turn 1: ")
    assert "line 1" in rejected["reject"]["reason"]
