"""review.jsonl: appended under a lock and fsynced, the last decision per record wins,
a torn last line is skipped and never glued to the next, concurrent writers never mix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from pydantic import ValidationError

from distillpipe.errors import InputError
from distillpipe.review.decisions import (
    HUMAN_EDITED,
    Decision,
    append_decisions,
    iter_decisions,
    latest_decisions,
    responses_hash,
)


def test_the_last_decision_per_record_wins(tmp_path: Path):
    path = tmp_path / "review.jsonl"
    append_decisions(path, [Decision(id="a", decision="accept"), Decision(id="b", decision="skip")])
    append_decisions(path, [Decision(id="a", decision="reject", reason="unsafe", note="leaks")])
    latest = latest_decisions(path)
    assert (
        latest["a"].decision == "reject" and latest["a"].reason_text() == "reviewer: unsafe: leaks"
    )
    assert latest["b"].decision == "skip"
    assert len(path.read_bytes().splitlines()) == 3


def test_a_line_torn_by_a_crash_is_skipped_and_cut_off_by_the_next_writer(tmp_path: Path):
    path = tmp_path / "review.jsonl"
    append_decisions(path, [Decision(id="a", decision="accept")])
    with path.open("ab") as stream:
        stream.write(b'{"id": "b", "decision": "acc')  # killed mid-write
    assert list(latest_decisions(path)) == ["a"]
    append_decisions(path, [Decision(id="c", decision="accept")])
    assert list(latest_decisions(path)) == ["a", "c"]
    assert b"acc" not in path.read_bytes().replace(b'"accept"', b"")


def test_a_bad_line_in_the_middle_names_file_and_line(tmp_path: Path):
    path = tmp_path / "review.jsonl"
    path.write_bytes(b'{"id": "a", "decision": "accept"}\n{"id": "b", "decision": "reject"}\n')
    with pytest.raises(InputError, match=r"review\.jsonl:2: not a review decision"):
        latest_decisions(path)


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"decision": "reject"}, "needs a reason"),
        ({"decision": "reject", "reason": "custom"}, "needs a note"),
        ({"decision": "edit", "text": "  "}, "needs the new response"),
        ({"decision": "pick"}, "needs the sample"),
        ({"decision": "reject", "reason": "boring"}, "reason"),
    ],
)
def test_incomplete_decisions_are_refused(fields: dict, problem: str):
    with pytest.raises(ValidationError, match=problem):
        Decision(id="a", **fields)


def test_the_reviewed_hash_ignores_a_reviewers_own_edit():
    record = {"responses": [{"text": "one"}, {"text": "two"}]}
    edited = {"responses": [*record["responses"], {"text": "mine", "provenance": HUMAN_EDITED}]}
    assert responses_hash(record) == responses_hash(edited)
    assert responses_hash(record) != responses_hash({"responses": [{"text": "one"}]})


WRITER = """
import sys
from pathlib import Path
from distillpipe.review.decisions import Decision, append_decisions
path, name = Path(sys.argv[1]), sys.argv[2]
for i in range(150):
    append_decisions(path, [Decision(id=f"{name}{i}", decision="edit", text="x" * 5000)])
"""


def test_two_concurrent_writers_leave_every_decision_once_and_a_file_that_parses(tmp_path: Path):
    path = tmp_path / "review.jsonl"
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), name]) for name in ("a", "b")
    ]
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    lines = path.read_bytes().splitlines()
    ids = [orjson.loads(line)["id"] for line in lines]  # every line is whole JSON
    assert sorted(ids) == sorted(f"{n}{i}" for n in "ab" for i in range(150))
    assert len([d for _, d in iter_decisions(path)]) == 300
