"""The per-model rules table: prefix lookup, config rows first, what is dropped or refused."""

from __future__ import annotations

from distillpipe.teachers.base import SamplingParams
from distillpipe.teachers.cost import builtin_prices
from distillpipe.teachers.model_rules import PLAIN, ModelRule, builtin_rules, find_rule


def test_dated_snapshots_and_sizes_find_their_family_by_the_longest_prefix():
    assert find_rule("openai", "o3-mini-2025-01-31") == builtin_rules()["openai"]["o3"]
    assert find_rule("openai", "gpt-5-nano").reasoning_effort[0] == "minimal"
    assert find_rule("openai", "gpt-5.1-2025-11-13").reasoning_effort[0] == "none"
    assert find_rule("openai", "o1-mini").reasoning_effort == ()
    assert find_rule("anthropic", "claude-sonnet-4-5-20250929").refuse == ("top_p",)
    assert find_rule("anthropic", "claude-sonnet-4-20250514").refuse == ()


def test_a_model_no_row_matches_is_a_plain_chat_model():
    assert find_rule("openai", "gpt-4o-mini") is PLAIN
    assert find_rule("openai", "my-local-llama") is PLAIN
    assert find_rule("anthropic", "claude-3-5-haiku-20241022") is PLAIN
    assert find_rule("vllm", "o3") is PLAIN  # rows are per provider


def test_config_rows_are_matched_before_the_built_in_ones():
    mine = ModelRule(max_tokens_key="max_completion_tokens")
    assert find_rule("openai", "o3-pro", {"o3-p": mine}) is mine
    assert find_rule("openai", "gpt-4o", {"gpt-4": mine}) is mine


def test_every_priced_reasoning_model_has_its_row():
    for model in builtin_prices()["openai"]:
        if model.startswith(("o1", "o3", "o4", "gpt-5")):
            assert find_rule("openai", model).max_tokens_key == "max_completion_tokens", model
    thinkers = ("claude-3-7", "claude-sonnet-4", "claude-opus-4", "claude-haiku-4")
    for model in builtin_prices()["anthropic"]:
        assert find_rule("anthropic", model).thinking == model.startswith(thinkers), model


def test_sent_leaves_out_what_the_rule_drops():
    rule = ModelRule(drop=("temperature", "top_p"))
    sent = rule.sent(SamplingParams(temperature=0.2, top_p=0.5, max_tokens=9), drop=("stop",))
    assert sent == {
        "max_tokens": 9,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "top_logprobs": None,
    }
    assert PLAIN.sent(SamplingParams()) == SamplingParams().as_dict()


def test_a_refused_parameter_at_its_neutral_value_is_no_problem():
    rule = ModelRule(refuse=("stop", "top_p", "top_logprobs"))
    assert rule.refusal(rule.sent(SamplingParams()), "m") is None
    key, why = rule.refusal(rule.sent(SamplingParams(top_logprobs=0)), "m") or ("", "")
    assert key == "top_logprobs" and why.startswith("m does not accept top_logprobs; leave it out")
    assert rule.refusal(rule.sent(SamplingParams(top_p=0.9)), "m") == (
        "top_p",
        "m does not accept top_p; leave it at 1.0 (or see teacher.model_rules)",
    )
