"""Length: characters, words and tokens on instruction and responses; truncation."""

from __future__ import annotations

import pytest

from distillpipe.config import Config
from distillpipe.filters.base import build_filter
from distillpipe.filters.length import LengthOptions
from distillpipe.records import new_record
from distillpipe.teachers.llamacpp import LlamaCppOptions


def sampled(instruction: str, *texts: str, finish_reason: str = "stop", usage=None) -> dict:
    record = new_record(instruction)
    record["responses"] = [
        {"text": t, "sample": i, "finish_reason": finish_reason, "usage": usage or {}}
        for i, t in enumerate(texts)
    ]
    return record


def decide(options: dict, record: dict, config=None):
    length = build_filter(LengthOptions(type="length", **options), config)
    return length.decide(record, length.score([record])[0])


def test_word_and_character_bounds_on_the_instruction() -> None:
    short = sampled("Hi there", "Hello!")
    verdict = decide({"instruction": {"min_words": 4}}, short)
    assert verdict.reason == "instruction: 2 words < min 4"
    assert verdict.score["instruction"] == {"chars": 8, "words": 2}
    long = sampled("word " * 200, "ok")
    assert decide({"instruction": {"max_chars": 500}}, long).reason == (
        "instruction: 1000 chars > max 500"
    )


def test_every_response_is_checked_unless_primary_only() -> None:
    record = sampled("Explain rain.", "Water falls from clouds when droplets grow.", "Rain.")
    assert decide({"response": {"min_words": 3}}, record).reason == "response 1: 1 words < min 3"
    record["selection"] = {"chosen": 0, "rejected": None, "by": "x"}
    assert decide({"response": {"min_words": 3}, "responses": "primary"}, record).keep


def test_a_response_cut_at_the_token_limit_is_rejected_as_truncated() -> None:
    record = sampled("Count to ten.", "1 2 3 4", finish_reason="length")
    assert decide({}, record).reason == "response 0 truncated at the token limit"
    assert decide({"reject_truncated": False}, record).keep


def test_response_tokens_come_from_the_teachers_usage() -> None:
    record = sampled("Say hi.", "Hello there, friend.", usage={"completion_tokens": 9})
    verdict = decide({"response": {"max_tokens": 8}}, record)
    assert verdict.reason == "response 0: 9 tokens > max 8"


def test_a_reasoning_models_hidden_reasoning_is_not_counted_as_the_response() -> None:
    usage = {"completion_tokens": 109, "reasoning_tokens": 100}
    record = sampled("Say hi.", "Hello there, friend.", usage=usage)
    verdict = decide({"response": {"max_tokens": 8}}, record)
    assert verdict.reason == "response 0: 9 tokens > max 8"


@pytest.mark.slow
def test_instruction_tokens_use_the_llamacpp_teachers_own_vocabulary() -> None:
    config = Config.model_validate({"teacher": LlamaCppOptions()})
    record = sampled("Tokenize this sentence, please.", "Done.")
    verdict = decide({"instruction": {"max_tokens": 100}}, record, config)
    tokens = verdict.score["instruction"]["tokens"]
    assert 4 <= tokens <= 10  # gemma's BPE: a handful of tokens, fewer than characters
    assert decide({"instruction": {"max_tokens": tokens - 1}}, record, config).reason == (
        f"instruction: {tokens} tokens > max {tokens - 1}"
    )


def test_the_trace_and_the_answer_are_bounded_apart() -> None:
    usage = {"completion_tokens": 60, "reasoning_tokens": 50}
    record = sampled("Add 2 and 3.", "5", usage=usage)
    record["responses"][0]["reasoning"] = "two plus three " * 10
    bounds = {"reasoning": {"max_words": 20}, "response": {"max_words": 5}}
    assert decide(bounds, record).reason == "reasoning 0: 30 words > max 20"
    assert decide({"reasoning": {"max_tokens": 50}, "response": {"max_tokens": 10}}, record).keep
    verdict = decide({"reasoning": {"min_tokens": 51}}, record)
    assert verdict.reason == "reasoning 0: 50 tokens < min 51"
    assert verdict.score["responses"][0]["reasoning"] == {"chars": 150, "words": 30, "tokens": 50}


def test_a_response_without_a_trace_has_an_empty_one() -> None:
    record = sampled("Add 2 and 3.", "5")
    assert decide({"reasoning": {"min_words": 1}}, record).reason == (
        "reasoning 0: 0 words < min 1"
    )
