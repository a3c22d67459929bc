"""Label Studio interchange through the command: the sample as import tasks with their
labeling config, and Label Studio's JSON export read back into review.jsonl."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import orjson
import pytest
from review_runs import response, write_run

from distillpipe.review.decisions import REASONS, latest_decisions


def distillpipe(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "distillpipe", *args], capture_output=True,
                          timeout=120)  # fmt: skip


@pytest.fixture
def run(tmp_path: Path) -> Path:
    kept = [{"id": f"k{i}", "instruction": f"task {i}", "input": "<b>x</b>",
             "responses": [response(f"answer {i}"), response(f"other {i}", 1)],
             "scores": {"length": {"words": 2}}} for i in range(4)]  # fmt: skip
    return write_run(tmp_path, kept, [], [{"type": "length"}])


def annotate(task: dict, *regions: tuple[str, str, object], cancelled: bool = False) -> dict:
    kinds = {"decision": "choices", "reason": "choices", "edit": "textarea", "note": "textarea",
             "pick": "number"}  # fmt: skip
    result = []
    for name, kind_value, value in regions:
        kind = kinds[name]
        wrapped = {"choices": [value]} if kind == "choices" else (
            {"text": [value]} if kind == "textarea" else {"number": value})  # fmt: skip
        result.append({"from_name": name, "to_name": kind_value, "type": kind, "value": wrapped})
    annotation = {"result": result, "was_cancelled": cancelled, "completed_by": 7,
                  "updated_at": "2026-01-02T10:00:00Z"}  # fmt: skip
    return {**task, "id": 1, "annotations": [*task.get("annotations", []), annotation]}


def test_export_then_import_round_trips_every_decision(run: Path, tmp_path: Path):
    tasks_path = tmp_path / "tasks.json"
    done = distillpipe("review", str(run), "--export", "labelstudio", "-o", str(tasks_path))
    assert done.returncode == 0, done.stderr.decode()
    tasks = orjson.loads(tasks_path.read_bytes())
    assert len(tasks) == 4 and all(set(t) == {"data"} for t in tasks)
    data = {t["data"]["record_id"]: t["data"] for t in tasks}
    assert data["k0"]["response"] == "answer 0" and data["k0"]["input"] == "<b>x</b>"
    assert "[2] other 0" in data["k0"]["samples"] and "length: kept" in data["k0"]["filters"]
    config = ElementTree.fromstring((tmp_path / "tasks.label-config.xml").read_text())
    reasons = config.find("Choices[@name='reason']")
    assert [c.get("value") for c in reasons] == list(REASONS)
    # what a team did in Label Studio, as its JSON export holds it
    by_id = {t["data"]["record_id"]: t for t in tasks}
    exported = [
        annotate(by_id["k0"], ("decision", "response", "accept")),
        annotate(by_id["k1"], ("decision", "response", "reject"), ("reason", "response", "unsafe"),
                 ("note", "response", "gives a password")),
        annotate(by_id["k2"], ("decision", "response", "edit"), ("edit", "response", "Fixed.")),
        annotate(annotate(by_id["k3"], ("decision", "response", "pick"), ("pick", "samples", 2)),
                 ("decision", "response", "reject"), ("reason", "response", "wrong"),
                 cancelled=True),  # a cancelled later annotation does not count
    ]  # fmt: skip
    export = tmp_path / "export.json"
    export.write_bytes(orjson.dumps(exported))
    done = distillpipe("review", str(run), "--import", str(export))
    assert done.returncode == 0, done.stderr.decode()
    assert "imported 4 new decision(s)" in done.stderr.decode()
    decisions = latest_decisions(run / "review.jsonl")
    assert decisions["k0"].decision == "accept"
    assert (decisions["k1"].reason, decisions["k1"].note) == ("unsafe", "gives a password")
    assert (decisions["k2"].text, decisions["k2"].chosen) == ("Fixed.", 0)
    assert (decisions["k3"].decision, decisions["k3"].chosen) == ("pick", 1)
    assert {d.source for d in decisions.values()} == {"labelstudio"}
    assert {d.reviewer for d in decisions.values()} == {"labelstudio:7"}
    assert decisions["k0"].reviewed == data["k0"]["reviewed"]  # applies to these responses only
    again = distillpipe("review", str(run), "--import", str(export))
    assert "imported 0 new decision(s)" in again.stderr.decode()
    assert len((run / "review.jsonl").read_bytes().splitlines()) == 4


def test_a_bad_annotation_is_a_one_line_error_naming_the_task(run: Path, tmp_path: Path):
    export = tmp_path / "export.json"
    export.write_bytes(orjson.dumps([annotate({"data": {"record_id": "k0"}},
                                              ("decision", "response", "reject"))]))  # fmt: skip
    done = distillpipe("review", str(run), "--import", str(export))
    assert done.returncode == 1
    assert "export.json: task 0: " in done.stderr.decode() and "reason" in done.stderr.decode()
    assert not (run / "review.jsonl").exists()
