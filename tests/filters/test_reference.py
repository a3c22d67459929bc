"""The reference filter on a corpus this test writes: per-sample verdicts with the
extracted answers, min_correct, verified-vs-wrong selection (so DPO pairs), the
configurable reference field, and records without a reference never guessed."""

from __future__ import annotations

from pathlib import Path

from support import write_config

from distillpipe.config import load_config
from distillpipe.exporters.select import pick_preference
from distillpipe.filters.base import build_filter
from distillpipe.filters.reference import ReferenceOptions
from distillpipe.io import read_jsonl, write_jsonl
from distillpipe.records import new_record
from distillpipe.runner import run_stage
from distillpipe.stages import stage_named


def record(instruction: str, *texts: str, **fields) -> dict:
    rec = new_record(instruction)
    rec["responses"] = [
        {"text": t, "model": "m", "finish_reason": "stop", "usage": {}, "sample": i}
        for i, t in enumerate(texts)
    ]
    rec.update(fields)
    return rec


CORPUS = [
    record(
        "Natalia sold clips to 48 friends in April, and half as many in May. How many in all?",
        "In May she sold 48 / 2 = 24 clips, so 48 + 24 = 70 in all. The answer is 70.",
        "In May she sold 48 / 2 = 24 clips.\nAltogether 48 + 24 = 72.\n#### 72",
        "She sold 72 clips. The answer is $\\boxed{72}$.",
        reference="Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72",
    ),
    record(
        "What is the probability that a fair die shows an even number?",
        "Three of six faces are even: $\\boxed{\\frac{3}{6}}$.",
        "It is one in three, so the answer is 1/3.",
        answer="\\frac{1}{2}",
    ),
    record(
        "Which planet is known as the Red Planet? (A) Venus (B) Mars (C) Jupiter (D) Saturn",
        "Jupiter is the largest planet. The answer is (C).",
        "Venus is the hottest. Answer: A",
        reference="B",
    ),
    record("Write a poem about the sea.", "Waves fold over waves."),
    record(
        "Name the capital of France.",
        "I think the capital of France is Lyon, though Marseille is bigger.",
        "Paris.",
        meta={"output": "Paris"},
    ),
]


def run_reference(tmp_path: Path, options: dict, records: list[dict] = CORPUS):
    source = tmp_path / "in.jsonl"
    write_jsonl(source, records)
    config_path = write_config(
        tmp_path / "config.yaml",
        {"name": "t", "teacher": {"backend": "llamacpp"}, "filter": [options]},
    )
    out, rejected = tmp_path / "out.jsonl", tmp_path / "rejected.jsonl"
    result = run_stage(
        stage_named("filter"), load_config(config_path), source, out, rejected_path=rejected
    )
    return result, list(read_jsonl(out)), {r["id"]: r for r in read_jsonl(rejected)}


def test_verdicts_on_a_written_corpus(tmp_path: Path) -> None:
    fields = ["reference", "answer", "meta.output"]
    result, kept, rejected = run_reference(tmp_path, {"type": "reference", "field": fields})
    gsm8k, dice, planets, poem, capital = CORPUS
    assert [r["id"] for r in kept] == [gsm8k["id"], dice["id"], capital["id"]]

    clips = kept[0]
    assert clips["scores"]["reference"] == {
        "correct": [False, True, True],
        "answers": ["70", "72", "72"],
        "matched_by": [None, "exact", "exact"],
        "reference": "72",
    }
    assert clips["selection"] == {"chosen": 1, "rejected": 0, "by": "reference"}
    assert kept[1]["scores"]["reference"]["correct"] == [True, False]
    assert kept[1]["scores"]["reference"]["matched_by"] == ["normalised", None]
    assert kept[2]["scores"]["reference"]["answers"] == [None, "Paris"]
    assert kept[2]["selection"] == {"chosen": 1, "rejected": 0, "by": "reference"}

    assert rejected[planets["id"]]["reject"]["reason"] == (
        "0 of 2 samples match the reference `B` (min_correct 1); answers: `(C)`, `A`"
    )
    assert rejected[poem["id"]]["reject"] == {
        "filter": "reference",
        "reason": "no reference answer in `reference` or `answer` or `meta.output`",
        "score": None,
    }
    stats = result.stats["filters"]["reference"]
    assert (stats["seen"], stats["kept"], stats["rejected"]) == (5, 3, 2)


def test_dpo_pairs_come_out_verified_versus_wrong(tmp_path: Path) -> None:
    _, kept, _ = run_reference(tmp_path, {"type": "reference", "field": ["reference", "answer"]})
    picked, reason = pick_preference(kept[0], system=None)
    assert reason is None
    assert "#### 72" in picked[0].example.response
    assert "70 in all" in (picked[0].example.rejected or "")


def test_min_correct_and_a_missing_reference_kept_when_configured(tmp_path: Path) -> None:
    fields = ["reference", "answer"]  # not meta.output: the capital has no reference here
    options = {"type": "reference", "field": fields, "min_correct": 2, "missing": "keep"}
    _, kept, rejected = run_reference(tmp_path, options)
    gsm8k, dice, planets, poem, capital = CORPUS
    assert [r["id"] for r in kept] == [gsm8k["id"], poem["id"], capital["id"]]
    assert "reference" not in kept[1].get("scores", {})
    assert set(rejected) == {dice["id"], planets["id"]}
    assert rejected[dice["id"]]["reject"]["reason"] == (
        "1 of 2 samples match the reference `\\frac{1}{2}` (min_correct 2); "
        "answers: `\\frac{3}{6}`, `1/3`"
    )


def test_a_seed_instances_outputs_each_count_and_a_kept_choice_stays_chosen() -> None:
    reference = build_filter(ReferenceOptions(type="reference", field="instances[].output"))
    seed = record(
        "Give a prime between 10 and 14.",
        "13 is prime. The answer is 13.",
        "11 works: the answer is 11.",
        "12 is even. The answer is 12.",
        instances=[{"input": "", "output": "11"}, {"input": "", "output": "13"}],
        selection={"chosen": 1, "rejected": None, "by": "consistency"},
    )
    verdict = reference.decide(seed, reference.score([seed])[0])
    assert verdict.keep and verdict.score["correct"] == [True, True, False]
    assert verdict.score["reference"] == ["11", "13"]
    assert verdict.selection == {"chosen": 1, "rejected": 2, "by": "reference"}


def test_a_reference_object_gives_its_answer_and_a_number_counts() -> None:
    reference = build_filter(ReferenceOptions(type="reference"))
    worded = record("2 + 2?", "The answer is 4.", reference={"answer": 4, "tests": "ignored"})
    zero = record("2 - 2?", "The answer is 0.", reference=0)
    scores = reference.score([worded, zero])
    assert [s["correct"] for s in scores] == [[True], [True]]


def test_the_answer_is_verified_never_the_trace() -> None:
    reference = build_filter(ReferenceOptions(type="reference"))
    thought = record("2 + 2?", "The answer is 4.", reference=4)
    thought["responses"][0]["reasoning"] = "Maybe 5? The answer is 5."
    wrong = record("2 + 3?", "The answer is 4.", reference=5)
    wrong["responses"][0]["reasoning"] = "2 + 3 = 5. The answer is 5."
    assert [s["correct"] for s in reference.score([thought, wrong])] == [[True], [False]]
