"""The review filter: a reviewer's decisions change the next filter run, and nothing else.

reject -> the rejected file with the reviewer's reason; edit -> a human-edited response
becomes the chosen sample; pick -> the picked sample is chosen; accept -> kept, and
with `overrule` it keeps a record an automatic filter rejected. A decision about
responses that have since changed is stale and not applied. The decisions file is in
the filter stage's hash."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import write_config

from distillpipe.config import load_config
from distillpipe.inputs import config_hash
from distillpipe.io import read_records, write_jsonl
from distillpipe.review.decisions import HUMAN_EDITED, Decision, append_decisions, responses_hash
from distillpipe.runner import run_stage
from distillpipe.stages import stage_named


def records() -> list[dict]:
    out = []
    for i in range(6):
        texts = [f"the first answer to task {i}", f"another longer answer to task {i}"]
        if i == 5:
            texts = ["no", "nope"]  # too short for the length filter
        responses = [
            {"text": t, "model": "m", "finish_reason": "stop", "usage": {}, "sample": s}
            for s, t in enumerate(texts)
        ]
        out.append({"id": f"r{i}", "instruction": f"Do task number {i}.", "responses": responses})
    return out


def run_filter(tmp_path: Path, decisions: list[Decision], overrule: bool | list[str] = True):
    path = tmp_path / "review.jsonl"
    path.unlink(missing_ok=True)
    append_decisions(path, decisions)
    config = load_config(write_config(tmp_path / "config.yaml", {
        "teacher": {"backend": "llamacpp"},
        "filter": [{"type": "length", "response": {"min_words": 3}},
                   {"type": "review", "decisions": str(path), "overrule": overrule}],
    }))  # fmt: skip
    write_jsonl(tmp_path / "in.jsonl", records())
    result = run_stage(stage_named("filter"), config, tmp_path / "in.jsonl", tmp_path / "out.jsonl",
                       rejected_path=tmp_path / "rejected.jsonl")  # fmt: skip
    kept = {r["id"]: r for r in read_records(tmp_path / "out.jsonl")}
    rejected = {r["id"]: r for r in read_records(tmp_path / "rejected.jsonl")}
    return kept, rejected, result.stats["filters"]["review"]


def seen(record_id: str) -> str:
    return responses_hash(next(r for r in records() if r["id"] == record_id))


def test_each_decision_changes_its_record_and_no_other(tmp_path: Path):
    kept_before, rejected_before, _ = run_filter(tmp_path, [])
    assert set(rejected_before) == {"r5"}
    kept, rejected, stats = run_filter(tmp_path, [
        Decision(id="r0", decision="reject", reason="wrong", note="it says 5", reviewed=seen("r0")),
        Decision(id="r1", decision="edit", text="The right answer.", chosen=0, reviewed=seen("r1")),
        Decision(id="r2", decision="pick", chosen=1, reviewed=seen("r2")),
        Decision(id="r3", decision="accept", reviewed=seen("r3")),
        Decision(id="r4", decision="skip", note="not sure"),
        Decision(id="r5", decision="accept", reviewed=seen("r5")),
    ])  # fmt: skip
    assert rejected["r0"]["reject"] == {
        "filter": "review",
        "reason": "reviewer: wrong: it says 5",
        "score": {"decision": "reject", "reason": "wrong", "note": "it says 5"},
    }
    edit = kept["r1"]["responses"][-1]
    assert (edit["text"], edit["provenance"], edit["model"], edit["sample"]) == (
        "The right answer.", HUMAN_EDITED, "human", 2)  # fmt: skip
    assert kept["r1"]["selection"] == {"chosen": 2, "rejected": 0, "by": "review"}
    assert kept["r2"]["selection"] == {"chosen": 1, "rejected": 0, "by": "review"}
    assert kept["r3"]["scores"]["review"] == {"decision": "accept"}
    # accept overrules the length filter's reject, which stays on the record
    length_reject = rejected_before["r5"]["reject"]
    assert kept["r5"]["overruled"] == [{**length_reject, "by": "review"}]
    assert kept["r4"] == kept_before["r4"]  # a skip changes nothing
    for unchanged in ("r3", "r4"):
        assert kept[unchanged]["responses"] == kept_before[unchanged]["responses"]
    assert set(kept) == {"r1", "r2", "r3", "r4", "r5"} and set(rejected) == {"r0"}
    assert stats["applied"] == {"reject": 1, "edit": 1, "pick": 1, "accept": 2, "overruled": 1}


@pytest.mark.parametrize("overrule", [False, ["heuristics"]])
def test_without_overrule_an_accept_leaves_an_automatic_reject_alone(tmp_path: Path, overrule):
    _, rejected, _ = run_filter(
        tmp_path, [Decision(id="r5", decision="accept", reviewed=seen("r5"))], overrule
    )
    assert "r5" in rejected and rejected["r5"]["reject"]["filter"] == "length"


def test_a_decision_about_responses_since_replaced_is_stale_and_not_applied(tmp_path: Path):
    kept, _, stats = run_filter(tmp_path, [
        Decision(id="r0", decision="reject", reason="wrong", reviewed="sha256:other"),
        Decision(id="r1", decision="pick", chosen=7),
    ])  # fmt: skip
    assert "r0" in kept and "selection" not in kept["r1"]
    assert kept["r0"]["scores"]["review"] == {"decision": "reject", "stale": True}
    assert stats["applied"] == {"stale": 2}


def test_the_decisions_file_is_part_of_the_filter_stage_hash(tmp_path: Path):
    path = tmp_path / "review.jsonl"
    config = load_config(write_config(tmp_path / "config.yaml", {
        "teacher": {"backend": "llamacpp"},
        "filter": [{"type": "review", "decisions": str(path)}],
    }))  # fmt: skip
    stage = stage_named("filter")
    before = config_hash(stage, config)
    append_decisions(path, [Decision(id="r0", decision="accept")])
    after = config_hash(stage, config)
    assert before != after == config_hash(stage, config)
    append_decisions(path, [Decision(id="r0", decision="reject", reason="wrong")])
    assert config_hash(stage, config) != after
    assert config_hash(stage_named("generate"), config) == config.fingerprint(
        *stage_named("generate").config_sections
    )  # the other stages do not read it


def test_the_default_decisions_file_is_in_the_run_directory(tmp_path: Path):
    config = load_config(write_config(tmp_path / "config.yaml", {
        "name": "mine", "run_dir": str(tmp_path / "runs"), "teacher": {"backend": "llamacpp"},
        "filter": [{"type": "review"}],
    }))  # fmt: skip
    assert config.filter[0].files_read(config) == [tmp_path / "runs" / "mine" / "review.jsonl"]
