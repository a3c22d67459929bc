"""Heuristics: refusal phrases, empty responses, echoes of the instruction, blocklist."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from distillpipe.filters.base import build_filter
from distillpipe.filters.heuristics import HeuristicsOptions
from distillpipe.records import new_record


def sampled(instruction: str, *texts: str) -> dict:
    record = new_record(instruction)
    record["responses"] = [{"text": t, "sample": i} for i, t in enumerate(texts)]
    return record


def decide(options: dict, record: dict):
    heuristics = build_filter(HeuristicsOptions(type="heuristics", **options))
    return heuristics.decide(record, heuristics.score([record])[0])


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("As an AI language model, I don't have feelings.",
         "response 0 has refusal phrase 'As an AI language model'"),
        ("I'm sorry, but I cannot help with that request.",
         "response 0 has refusal phrase \"I'm sorry, but I cannot\""),
        ("I cannot help with hacking.", "response 0 has refusal phrase 'I cannot help with'"),
        ("", "response 0 is empty"),
        (" \n\t ", "response 0 is empty"),
        ("Describe a rainbow.", "response 0 repeats the instruction"),
        ("describe   a rainbow", "response 0 repeats the instruction"),
    ],
)  # fmt: skip
def test_bad_responses_are_rejected_with_the_reason(text: str, reason: str) -> None:
    assert decide({}, sampled("Describe a rainbow.", text)).reason == reason


def test_good_responses_pass() -> None:
    verdict = decide({}, sampled("Describe a rainbow.", "An arc of colours after rain."))
    assert verdict.keep and verdict.score == 0


def test_blocklist_and_extra_phrases_and_switches() -> None:
    record = sampled("Write a tip.", "Visit http://spam.example for more!")
    assert decide({"blocklist": [r"https?://\S+"]}, record).reason == (
        "response 0 matches blocklist 'http://spam.example'"
    )
    record = sampled("Write a tip.", "Drink water. Hope this helps!")
    assert decide({"phrases": ["hope this helps"]}, record).reason == (
        "response 0 has refusal phrase 'Hope this helps'"
    )
    refusal = sampled("Hi", "As an AI language model, hello.")
    assert decide({"refusals": False}, refusal).keep


def test_several_problems_are_all_named() -> None:
    verdict = decide({}, sampled("Say hi.", "", "As an AI language model, hi."))
    assert verdict.score == 2
    assert verdict.reason == (
        "response 0 is empty; response 1 has refusal phrase 'As an AI language model'"
    )


def test_an_invalid_regex_is_a_config_error() -> None:
    with pytest.raises(ValidationError, match="invalid regex"):
        HeuristicsOptions(type="heuristics", blocklist=["("])
