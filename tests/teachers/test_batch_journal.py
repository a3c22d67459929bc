"""The batch journal: intents noted before a submit, batch ids after, and what a resume polls."""

from __future__ import annotations

from pathlib import Path

import orjson

from distillpipe.teachers.batch_journal import JOURNAL, BatchJournal, plan_resume


def test_an_intent_is_noted_before_its_batch_id_and_then_its_batch_is_polled(tmp_path: Path):
    journal = BatchJournal(tmp_path)
    intent = journal.intend("openai", ["a", "b"])
    [noted] = journal.submissions()
    assert (noted.tag, noted.custom_ids, noted.batch_ids) == (intent.tag, ["a", "b"], [])
    assert noted.created_at == intent.created_at

    journal.note_batch(intent, "batch_1")
    plan = plan_resume(journal.submissions(), {"a", "b", "c"})
    assert plan.active == {"batch_1": {"a", "b"}}
    assert plan.unresolved == []
    assert plan.known_batches == {"batch_1"}


def test_an_intent_without_a_batch_id_is_looked_for_and_an_abandoned_one_is_not(
    tmp_path: Path,
):
    journal = BatchJournal(tmp_path)
    lost = journal.intend("anthropic", ["a", "b"])
    [(intent, pending)] = plan_resume(journal.submissions(), {"a"}).unresolved
    assert (intent.tag, pending) == (lost.tag, {"a"})

    journal.abandon(lost)
    plan = plan_resume(journal.submissions(), {"a", "b"})
    assert (plan.active, plan.unresolved) == ({}, [])  # its calls are simply fresh again


def test_a_call_is_polled_in_the_latest_batch_that_carries_it(tmp_path: Path):
    journal = BatchJournal(tmp_path)
    first = journal.intend("openai", ["a", "b"])
    journal.note_batch(first, "batch_1")
    retry = journal.intend("openai", ["b"])  # b failed in batch_1
    journal.note_batch(retry, "batch_2")
    assert plan_resume(journal.submissions(), {"a", "b"}).active == {
        "batch_1": {"a"},
        "batch_2": {"b"},
    }


def test_every_batch_adopted_for_an_intent_is_polled_for_its_calls(tmp_path: Path):
    journal = BatchJournal(tmp_path)
    intent = journal.intend("anthropic", ["a", "b"])
    journal.note_batch(intent, "msgbatch_1", adopted=True)
    journal.note_batch(intent, "msgbatch_2", adopted=True)
    assert plan_resume(journal.submissions(), {"a", "b"}).active == {
        "msgbatch_1": {"a", "b"},
        "msgbatch_2": {"a", "b"},
    }


def test_a_line_torn_by_a_kill_is_skipped_and_the_next_line_starts_afresh(tmp_path: Path):
    journal = BatchJournal(tmp_path)
    intent = journal.intend("openai", ["a"])
    with (tmp_path / JOURNAL).open("ab") as stream:
        stream.write(b'{"tag": "' + intent.tag.encode() + b'", "batch_')  # killed mid-write
    journal.note_batch(intent, "batch_1")
    [noted] = journal.submissions()
    assert noted.batch_ids == ["batch_1"]


def test_a_journal_written_before_intents_still_resumes(tmp_path: Path):
    line = {"batch_id": "batch_1", "backend": "openai", "custom_ids": ["a", "b"]}
    (tmp_path / JOURNAL).write_bytes(orjson.dumps(line) + b"\n")
    plan = plan_resume(BatchJournal(tmp_path).submissions(), {"a", "b"})
    assert plan.active == {"batch_1": {"a", "b"}}
    assert plan.unresolved == []
