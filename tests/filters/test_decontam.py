"""Decontamination on constructed benchmarks: exactly the records that quote a
benchmark item are rejected, and the reason names the benchmark and the item."""

from __future__ import annotations

from pathlib import Path

import pytest

from distillpipe.errors import InputError
from distillpipe.filters.base import build_filter
from distillpipe.filters.decontam import DecontamOptions
from distillpipe.io import write_jsonl
from distillpipe.records import new_record

GSM = [
    {"id": "gsm-1", "question": "Natalia sold clips to 48 of her friends in April, and then "
     "she sold half as many clips in May. How many clips did Natalia sell altogether?"},
    {"id": "gsm-2", "question": "Weng earns 12 dollars an hour for babysitting. Yesterday she "
     "just did 50 minutes of babysitting. How much did she earn?"},
]  # fmt: skip
TRIVIA = [{"q": "Which planet is known as the Red Planet?", "a": "Mars"}]


def with_response(instruction: str, response: str = "Sure.") -> dict:
    record = new_record(instruction)
    record["responses"] = [{"text": response, "sample": 0}]
    return record


@pytest.fixture
def benchmarks(tmp_path: Path) -> list[dict]:
    write_jsonl(tmp_path / "gsm.jsonl", GSM)
    import datasets

    datasets.Dataset.from_list(TRIVIA).save_to_disk(str(tmp_path / "trivia"))
    return [
        {"name": "gsm8k", "path": str(tmp_path / "gsm.jsonl"), "fields": ["question"],
         "id_field": "id"},
        {"path": str(tmp_path / "trivia"), "fields": ["q"]},
    ]  # fmt: skip


def test_exactly_the_contaminated_records_are_rejected(benchmarks) -> None:
    clean = [
        with_response("Natalia sold clips to friends. Write a poem about it."),
        with_response("How many moons does Jupiter have?"),
    ]
    quoted = with_response(
        "Solve: natalia SOLD clips to 48 of her friends in April, and then she sold half "
        "as many clips in May! Show your work."
    )
    in_answer = with_response(
        "Make up a babysitting word problem.",
        "Weng earns 12 dollars an hour for babysitting; yesterday she just did 50 minutes.",
    )
    short_item = with_response("Quiz time: which planet is known as the red planet?")
    records = [*clean, quoted, in_answer, short_item]
    decontam = build_filter(
        DecontamOptions.model_validate({"type": "decontam", "benchmarks": benchmarks})
    )
    verdicts = [
        decontam.decide(r, s) for r, s in zip(records, decontam.score(records), strict=True)
    ]
    assert [v.keep for v in verdicts] == [True, True, False, False, False]
    assert verdicts[2].reason.startswith("instruction overlaps benchmark gsm8k item gsm-1: ")
    assert verdicts[3].reason.startswith("response 0 overlaps benchmark gsm8k item gsm-2: ")
    assert verdicts[4].reason.startswith("instruction overlaps benchmark trivia item 0: ")
    assert verdicts[2].score["ngram"].split()[0] == "natalia"


def test_n_is_configurable(benchmarks) -> None:
    eight_words = with_response("Then she sold half as many clips in May, right?")
    for n, kept in ((13, True), (8, False)):
        decontam = build_filter(DecontamOptions.model_validate(
            {"type": "decontam", "benchmarks": benchmarks[:1], "n": n}))  # fmt: skip
        assert decontam.decide(eight_words, decontam.score([eight_words])[0]).keep is kept


def test_a_missing_field_names_the_benchmark_and_row(benchmarks) -> None:
    broken = [{**benchmarks[0], "fields": ["problem"]}]
    decontam = build_filter(
        DecontamOptions.model_validate({"type": "decontam", "benchmarks": broken})
    )
    with pytest.raises(InputError, match="benchmark gsm8k: row 0 has no field 'problem'"):
        decontam.score([with_response("Hi")])
