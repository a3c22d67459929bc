"""Self-consistency: answer extraction on real-looking teacher outputs, majority
voting with thresholds, the chosen/rejected selection, and free-form similarity."""

from __future__ import annotations

import pytest

from distillpipe.filters.answers import extract_answer, last_boxed
from distillpipe.filters.base import build_filter
from distillpipe.filters.consistency import ConsistencyOptions
from distillpipe.records import new_record

EXTRACTION = [
    ("First, 48 / 2 = 24 clips in May. Then 48 + 24 = 72.\n\nThe answer is 72.", "72"),
    ("She earns $12/60 = $0.2 per minute, so 0.2 * 50 = 10.\n#### 10", "10"),
    ("Adding them up gives a total of 1,000 apples. The final answer is 1,000.", "1000"),
    ("So x = 1000.0", "1000"),
    ("In scientific notation this is 1e3", "1000"),
    ("Therefore the probability is $\\boxed{\\frac{1}{2}}$.", "0.5"),
    ("We simplify: \\boxed{\\frac{\\sqrt{3}}{2}} is the exact value.", "\\frac{\\sqrt{3}}{2}"),
    ("Step 3: combine.\n\n**Answer:** 3.50 dollars", "3.5"),
    ("The discount is \\boxed{25\\%}.", "25"),
    ("Among the options, Mars is red. The answer is (B).", "B"),
    ("Let's eliminate A and D. Answer: C) Paris", "C"),
    ("I believe the answer is Paris.", "paris"),
    ("The answer is: **42**", "42"),
    ("Sorry, I am not sure how to solve this problem.", None),
    ("The result is \\boxed{x^{2} + 1}", "x^{2} + 1"),
]


@pytest.mark.parametrize(("text", "expected"), EXTRACTION)
def test_answer_extraction(text: str, expected: str | None) -> None:
    assert extract_answer(text) == expected


def test_last_boxed_matches_nested_braces_and_takes_the_last() -> None:
    assert last_boxed("\\boxed{1} then \\boxed{\\frac{a}{b}}") == "\\frac{a}{b}"
    assert last_boxed("\\boxed{unclosed") is None


def sampled(*texts: str) -> dict:
    record = new_record("What is 48 + 24?")
    record["responses"] = [{"text": t, "sample": i} for i, t in enumerate(texts)]
    return record


def decide(options: dict, record: dict):
    consistency = build_filter(ConsistencyOptions(type="consistency", **options))
    return consistency.decide(record, consistency.score([record])[0])


def test_majority_is_chosen_and_a_dissenting_sample_rejected() -> None:
    record = sampled("It is 70.", "The answer is 72.", "so \\boxed{72}", "I get 72.0")
    verdict = decide({}, record)
    assert verdict.keep
    assert verdict.score == {
        "answers": ["70", "72", "72", "72"], "majority": "72", "votes": 3, "agreement": 0.75,
    }  # fmt: skip
    assert verdict.selection == {"chosen": 1, "rejected": 0, "by": "consistency"}


def test_agreement_threshold_and_min_votes() -> None:
    split = sampled("The answer is 72.", "The answer is 71.", "The answer is 72.", "Hmm.")
    assert decide({"min": 0.5}, split).keep  # 2 of 4
    below = decide({"min": 0.75}, split)
    assert not below.keep and below.reason == "agreement 0.5 < min 0.75"
    unanimous_pair = sampled("The answer is 5.", "5")
    assert decide({"min_votes": 2}, unanimous_pair).keep
    lonely = decide({"min_votes": 3}, unanimous_pair)
    assert lonely.reason == "majority has 2 votes < min_votes 3"


def test_no_preference_signal_means_no_rejected_sample() -> None:
    verdict = decide({}, sampled("The answer is 9.", "\\boxed{9}"))
    assert verdict.selection == {"chosen": 0, "rejected": None, "by": "consistency"}


def test_fewer_than_two_samples_or_no_answers_are_rejected_with_reasons() -> None:
    assert decide({}, sampled("The answer is 3.")).reason == (
        "self-consistency needs at least 2 samples, got 1"
    )
    assert decide({}, sampled("No idea.", "Cannot say.")).reason == (
        "no sample gives an extractable answer"
    )


def test_free_form_similarity_with_rouge_l() -> None:
    agree = sampled(
        "Paris is the capital of France.",
        "The capital of France is Paris.",
        "Paris is the capital city of France.",
    )
    disagree = sampled("Bananas are yellow.", "Quantum computers use qubits.", "Rain is wet.")
    kept = decide({"mode": "similarity", "min": 0.5}, agree)
    assert kept.keep and kept.score["method"] == "rouge-l"
    assert kept.selection == {"chosen": 0, "rejected": None, "by": "consistency"}  # most central
    dropped = decide({"mode": "similarity", "min": 0.5}, disagree)
    assert not dropped.keep and dropped.reason == "similarity 0 < min 0.5"


@pytest.mark.slow
def test_free_form_similarity_with_minilm_embeddings() -> None:
    options = {"mode": "similarity", "similarity": "embedding", "min": 0.6}
    agree = sampled("Paris is the capital of France.", "France's capital city is Paris.")
    disagree = sampled("Bananas are yellow.", "Quantum computers use qubits.")
    assert decide(options, agree).keep
    assert not decide(options, disagree).keep


def by_teachers(*samples: tuple[str, str]) -> dict:
    record = new_record("What is 48 + 24?")
    record["responses"] = [
        {"text": text, "sample": i, "teacher": teacher} for i, (teacher, text) in enumerate(samples)
    ]
    return record


def test_across_teachers_each_teacher_votes_its_own_majority_once() -> None:
    # "many" gives three samples answering 70; two teachers answer 72 once each
    record = by_teachers(
        ("many", "It is 70."), ("many", "70"), ("many", "I get 70"),
        ("a", "The answer is 72."), ("b", "so \\boxed{72}"),
    )  # fmt: skip
    assert decide({}, record).score["majority"] == "70"  # over samples: 3 of 5
    verdict = decide({"across": "teachers"}, record)
    assert verdict.keep
    assert verdict.score["teachers"] == {"many": "70", "a": "72", "b": "72"}
    assert (verdict.score["majority"], verdict.score["votes"]) == ("72", 2)
    assert verdict.score["agreement"] == pytest.approx(2 / 3, abs=1e-6)
    assert verdict.selection == {"chosen": 3, "rejected": 0, "by": "consistency"}


def test_across_teachers_weighted_by_the_panels_weights(tmp_path) -> None:
    from support import write_config

    from distillpipe.config import load_config

    member = {"backend": "llamacpp", "mode": "completion"}
    config = load_config(
        write_config(
            tmp_path / "c.yaml",
            {
                "teachers": [
                    {"name": "many", "weight": 3.0, **member},
                    {"name": "a", **member},
                    {"name": "b", **member},
                ],
                "filter": [
                    {"type": "consistency", "across": "teachers", "weighted": True, "min_votes": 1}
                ],
            },
        )
    )
    consistency = build_filter(config.filter[0], config)
    record = by_teachers(("many", "70"), ("a", "72"), ("b", "72"))
    verdict = consistency.decide(record, consistency.score([record])[0])
    assert verdict.score["majority"] == "70"
    assert verdict.score["agreement"] == pytest.approx(3 / 5)
    assert verdict.selection["chosen"] == 0


def test_across_teachers_needs_two_teachers() -> None:
    verdict = decide({"across": "teachers"}, by_teachers(("a", "72"), ("a", "72")))
    assert not verdict.keep and "needs samples of 2 teachers" in verdict.reason
