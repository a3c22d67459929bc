"""Reasoning traces: every wire shape parsed into one response shape, the answer
free of the trace; the raw text kept in the cache, split when read."""

from __future__ import annotations

import pytest
from api_runs import api_config, generate
from fault_server import REDACTED_DATA, THINKING, TRACE, FaultServer

from distillpipe.cache import ResponseCache
from distillpipe.teachers.base import Completion
from distillpipe.teachers.reasoning import (
    ReasoningOptions,
    from_anthropic_blocks,
    from_openai_message,
    split_inline,
)

ECHO = "echo: "


@pytest.mark.parametrize(
    ("text", "reasoning", "answer"),
    [
        ("<think>\nweigh it\n</think>\n\n42", "weigh it", "42"),
        ("  <think>a</think>b", "a", "b"),
        ("weigh it\n</think>\n\n42", "weigh it", "42"),  # the prompt opened the block
        ("<think>\nstill thinking", "still thinking", ""),  # cut off inside the trace
        ("<think></think>\n\n42", None, "42"),
        ("just an answer\n", None, "just an answer\n"),
        ("talk of <think> tags</think> in an answer", None, None),
    ],
)
def test_inline_traces_split_into_reasoning_and_answer(text, reasoning, answer):
    parsed = split_inline(text)
    assert parsed.reasoning == reasoning
    assert parsed.answer == (text if answer is None else answer)
    assert parsed.kind == ("raw" if reasoning else "none")


def test_inline_tags_are_configurable_and_tried_in_order():
    tags = [("<reasoning>", "</reasoning>"), ("<think>", "</think>")]
    assert split_inline("<reasoning>r</reasoning>a", tags).reasoning == "r"
    assert split_inline("<think>t</think>a", tags).reasoning == "t"
    assert split_inline("<think>t</think>a", [("<r>", "</r>")]).reasoning is None


def test_openai_messages_carry_the_trace_in_either_field():
    for key in ("reasoning_content", "reasoning"):
        parsed = from_openai_message({"content": "42", key: " think \n"})
        assert (parsed.answer, parsed.reasoning, parsed.kind) == ("42", "think", "raw")
    assert from_openai_message({"content": None}).answer == ""


def test_anthropic_blocks_keep_their_signature_and_redacted_data():
    blocks = [
        {"type": "thinking", "thinking": "hmm", "signature": "c2ln"},
        {"type": "text", "text": "42"},
    ]
    parsed = from_anthropic_blocks(blocks, "summary")
    assert (parsed.answer, parsed.reasoning, parsed.kind) == ("42", "hmm", "summary")
    assert parsed.blocks == blocks[:1]
    redacted = [{"type": "redacted_thinking", "data": "ZW5j"}, {"type": "text", "text": "42"}]
    parsed = from_anthropic_blocks(redacted, "summary")
    assert (parsed.answer, parsed.reasoning, parsed.kind) == ("42", None, "redacted")
    assert parsed.blocks == redacted[:1]


def test_reading_a_completion_splits_and_counts_the_trace_once():
    raw = Completion("<think>two words</think>42", "m", "stop", 3, 9)
    read = raw.read(ReasoningOptions())
    assert (read.text, read.reasoning, read.reasoning_kind) == ("42", "two words", "raw")
    assert read.reasoning_tokens == 2 and read.reasoning_tokens_counted
    assert raw.read(ReasoningOptions(tags=[])).text == raw.text
    assert raw.read(ReasoningOptions(inline=False)).reasoning is None


def test_old_cache_values_read_as_responses_without_a_trace():
    old = {"text": "hi", "model": "m", "finish_reason": "stop", "usage": {}}
    response = Completion.from_cache(old).to_response(0)
    assert response["reasoning"] is None and response["reasoning_kind"] == "none"
    assert response["text"] == "hi"


OPENAI_SHAPES = ["reasoning_content", "reasoning", "inline", "inline_closing"]


@pytest.mark.parametrize("shape", OPENAI_SHAPES)
def test_every_openai_wire_shape_gives_the_same_response_shape(fault_server, tmp_path, shape):
    fault_server.reasoning_shape = shape
    _, [record] = generate(api_config(fault_server), tmp_path, 1)
    [response] = record["responses"]
    assert response["text"].startswith(ECHO) and "think" not in response["text"]
    assert TRACE not in response["text"]
    assert (response["reasoning"], response["reasoning_kind"]) == (TRACE, "raw")
    assert response["usage"]["reasoning_tokens"] > 0


@pytest.mark.parametrize("shape", ["inline", "inline_closing"])
def test_raw_completions_split_inline_traces_too(fault_server, tmp_path, shape):
    fault_server.reasoning_shape = shape
    config = api_config(fault_server, mode="completion")
    _, [record] = generate(config, tmp_path, 1)
    [response] = record["responses"]
    assert response["text"].startswith(ECHO) and response["reasoning"] == TRACE


def test_the_cache_keeps_the_raw_text_and_the_tags_resplit_it(fault_server, tmp_path):
    fault_server.reasoning_shape = "inline"
    config = api_config(fault_server)
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
    generate(config, tmp_path / "a", 1)
    [value] = ResponseCache(config.cache.path).get_many(_keys(config)).values()
    assert value.text.startswith(f"<think>\n{TRACE}\n</think>")
    plain = api_config(fault_server, reasoning={"inline": False})
    _, [again] = generate(plain, tmp_path / "b", 1)
    assert sum(fault_server.answered.values()) == 1  # the cache answered: tags are read time
    assert again["responses"][0]["text"] == value.text
    assert again["responses"][0]["reasoning"] is None


def _keys(config):
    from distillpipe.dispatch import call_key
    from distillpipe.stages.generate import RequestBuilder
    from distillpipe.teachers.base import teacher_identity

    build = RequestBuilder(config, "chat")
    request = build({"id": "r0", "instruction": "Say the number 0 in words."})
    params = config.teacher.request_params(request.params)
    return [call_key(teacher_identity(config.teacher), request, config.seed, 0, params)]


THINKER = "claude-sonnet-4-20250514"


def test_anthropic_thinking_keeps_its_signature_for_replay(fault_server, tmp_path):
    config = api_config(
        fault_server,
        "anthropic",
        generate={"max_tokens": 2048},
        model=THINKER,
        thinking_budget=1024,
    )
    _, [record] = generate(config, tmp_path, 1)
    [response] = record["responses"]
    assert response["text"].startswith(ECHO)
    assert (response["reasoning"], response["reasoning_kind"]) == (THINKING, "summary")
    assert response["reasoning_blocks"] == [
        {"type": "thinking", "thinking": THINKING, "signature": "c2ln"}
    ]


def test_anthropic_redacted_thinking_is_named_and_kept(fault_server: FaultServer, tmp_path):
    fault_server.reasoning_shape = "redacted_thinking"
    _, [record] = generate(api_config(fault_server, "anthropic"), tmp_path, 1)
    [response] = record["responses"]
    assert response["text"].startswith(ECHO)
    assert (response["reasoning"], response["reasoning_kind"]) == (None, "redacted")
    assert response["reasoning_blocks"] == [{"type": "redacted_thinking", "data": REDACTED_DATA}]
