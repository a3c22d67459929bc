"""Response formats on the wire: what OpenAI, a vLLM server, llama-cpp-python's server
and Anthropic are sent for a schema (the fault server checks OpenAI's strict rules and
Anthropic's tool rules as the APIs do), and their answers parsed by the format filter.
The vLLM engine's structured outputs run on the vLLM stand-in."""

from __future__ import annotations

import asyncio
import functools
import json
from pathlib import Path

import orjson
import pytest
from api_runs import api_config, generate
from fault_server import FaultServer
from vllm_standin import StandInEngine, StandInLLM
from vllm_types import RequestOutputKind, SamplingParams, StructuredOutputsParams

from distillpipe.config import ConfigSource, parse_config
from distillpipe.dispatch import Dispatcher
from distillpipe.errors import ConfigError, FatalTeacherError
from distillpipe.filters.format import FormatFilter, FormatOptions
from distillpipe.structured import ResponseFormat
from distillpipe.teachers.anthropic import AnthropicOptions, AnthropicTeacher
from distillpipe.teachers.base import Call, Request
from distillpipe.teachers.base import SamplingParams as Params
from distillpipe.teachers.openai import OpenAIOptions, OpenAITeacher
from distillpipe.teachers.vllm import VllmApi, VllmOptions, VllmTeacher

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "kind": {"enum": ["fruit", "vegetable"]},
        "colors": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["name", "kind", "colors"],
    "additionalProperties": False,
}
ANSWER = {"name": "apple", "kind": "fruit", "colors": ["red", "green"]}
FRUIT = ({"role": "user", "content": "Describe an apple."},)


def asked(response_format=SCHEMA, id: str = "q", **fields) -> Request:
    return Request(
        id, Params(max_tokens=32), response_format=ResponseFormat.of(response_format),
        **({"messages": FRUIT} | fields),
    )  # fmt: skip


def resolve(teacher, requests):
    async def run():
        try:
            return await Dispatcher(teacher, None, config_seed=3).resolve(requests)
        finally:
            await teacher.aclose()

    return asyncio.run(run())


def parsed(text: str, schema=SCHEMA):
    check = FormatFilter(FormatOptions(type="format", schema=schema)).check
    result = check(text, ResponseFormat.of(schema))
    assert result["ok"], result
    return result["parsed"]


def openai_at(server: FaultServer, **options) -> OpenAITeacher:
    options.setdefault("model", "gpt-4o-mini")
    return OpenAITeacher(OpenAIOptions(base_url=f"{server.url}/v1", api_key="sk-test", **options))


def test_openai_gets_a_strict_json_schema_and_its_answer_parses(fault_server: FaultServer):
    fault_server.answer = lambda body: json.dumps(ANSWER)
    [[completion]] = resolve(openai_at(fault_server), [asked()])
    [sent] = fault_server.received
    assert sent["body"]["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": SCHEMA, "strict": True},
    }
    assert parsed(completion.text) == ANSWER


def test_openai_json_mode_and_a_schema_strict_mode_would_refuse(fault_server: FaultServer):
    fault_server.answer = lambda body: '{"any": 1}'
    [[completion]] = resolve(openai_at(fault_server), [asked("json")])
    assert fault_server.received[-1]["body"]["response_format"] == {"type": "json_object"}
    assert parsed(completion.text, "json") == {"any": 1}
    open_schema = {"type": "object", "properties": {"name": {"type": "string"}}}
    with pytest.raises(FatalTeacherError, match="'additionalProperties' is required"):
        resolve(openai_at(fault_server), [asked(open_schema)])
    resolve(openai_at(fault_server, schema_strict=False), [asked(open_schema)])
    assert fault_server.received[-1]["body"]["response_format"]["json_schema"]["strict"] is False


def test_an_openai_refusal_of_a_schema_is_a_content_filter_answer():
    teacher = OpenAITeacher(OpenAIOptions(model="gpt-4o", api_key="k"))
    message = {"role": "assistant", "content": None, "refusal": "I can't help with that."}
    data = {"model": "gpt-4o", "choices": [{"message": message, "finish_reason": "stop"}]}
    completion = teacher.parse(data)
    assert (completion.text, completion.finish_reason) == ("", "content_filter")


def body_for(teacher: OpenAITeacher, request: Request) -> dict:
    return teacher.body(Call(request, 0, "v2:sha256:" + "0" * 64, 1))


@pytest.mark.parametrize(
    ("via", "fields"),
    [
        ("structured_outputs", {"structured_outputs": {"json": SCHEMA}}),
        ("guided_json", {"guided_json": SCHEMA}),
        ("json_object", {"response_format": {"type": "json_object", "schema": SCHEMA}}),
    ],
)
def test_vllm_and_llama_cpp_servers_get_their_own_fields(fault_server, via, fields):
    fault_server.answer = lambda body: json.dumps(ANSWER)
    [[completion]] = resolve(openai_at(fault_server, model="served", schema_via=via), [asked()])
    sent = fault_server.received[-1]["body"]
    assert {key: sent[key] for key in fields} == fields
    assert "response_format" not in sent or via == "json_object"
    assert parsed(completion.text) == ANSWER


def test_a_vllm_server_takes_a_schema_with_raw_prompts_too():
    teacher = OpenAITeacher(
        OpenAIOptions(model="m", base_url="http://127.0.0.1:1/v1", mode="completion",
                      schema_via="structured_outputs")
    )  # fmt: skip
    body = body_for(teacher, asked(messages=None, prompt="Apple as JSON:"))
    assert body["prompt"] == "Apple as JSON:"
    assert body["structured_outputs"] == {"json": SCHEMA}
    json_mode = body_for(teacher, asked("json", messages=None, prompt="JSON:"))
    assert json_mode["structured_outputs"] == {"json_object": True}


def test_the_grammar_route_sends_gbnf_for_llama_cpp_servers():
    teacher = OpenAITeacher(
        OpenAIOptions(model="m", base_url="http://127.0.0.1:1/v1", schema_via="grammar")
    )
    grammar = body_for(teacher, asked())["grammar"]
    assert "root ::=" in grammar and '"\\"fruit\\""' in grammar


def test_how_a_format_is_sent_is_part_of_the_cache_key_of_formatted_requests_only():
    def key(request: Request, **options) -> str:
        options.setdefault("base_url", "http://127.0.0.1:1/v1")
        teacher = OpenAITeacher(OpenAIOptions(model="m", **options))
        return Dispatcher(teacher, None).calls_for(request)[0].key

    formatted, plain = asked(), Request("p", Params(), messages=FRUIT)
    ways = [{}, {"schema_via": "grammar"}, {"schema_strict": False}]
    assert len({key(formatted, **way) for way in ways}) == 3
    assert len({key(plain, **way) for way in ways}) == 1


def test_openai_batches_carry_the_same_response_format(fault_server, tmp_path: Path):
    config = api_config(fault_server, "openai", {"response_format": SCHEMA}, mode="batch")
    generate(config, tmp_path, 2, state_dir=tmp_path / "batches")
    [batch] = fault_server.batches.values()
    assert [
        item["body"]["response_format"]["json_schema"]["schema"] for item in batch["items"]
    ] == [
        SCHEMA,
        SCHEMA,
    ]


def anthropic_at(server: FaultServer, **options) -> AnthropicTeacher:
    options.setdefault("model", "claude-3-5-haiku-20241022")
    return AnthropicTeacher(AnthropicOptions(base_url=server.url, api_key="sk-ant", **options))


def test_anthropic_is_forced_to_call_a_tool_whose_input_is_the_answer(fault_server):
    fault_server.tool_input = lambda body: ANSWER
    [[completion]] = resolve(anthropic_at(fault_server), [asked()])
    body = fault_server.received[-1]["body"]
    assert body["tools"] == [
        {
            "name": "answer",
            "description": "Give the answer: its input is the whole answer.",
            "input_schema": SCHEMA,
        }
    ]
    assert body["tool_choice"] == {"type": "tool", "name": "answer"}
    assert completion.finish_reason == "stop"
    assert parsed(completion.text) == ANSWER
    [[any_object]] = resolve(anthropic_at(fault_server), [asked("json")])
    assert fault_server.received[-1]["body"]["tools"][0]["input_schema"] == {"type": "object"}
    assert parsed(any_object.text, "json") == ANSWER


def test_anthropic_refuses_a_schema_while_thinking_before_anything_is_sent(fault_server):
    teacher = anthropic_at(fault_server, model="claude-sonnet-4-20250514", thinking_budget=1024)
    request = Request(
        "q", Params(max_tokens=2048), messages=FRUIT, response_format=ResponseFormat.of(SCHEMA)
    )
    with pytest.raises(ConfigError, match=r"request q: teacher\.thinking_budget: .*forced tool"):
        resolve(teacher, [request])
    assert fault_server.received == []


def test_anthropic_batches_answer_through_the_tool_too(fault_server, tmp_path: Path):
    fault_server.tool_input = lambda body: ANSWER
    config = api_config(fault_server, "anthropic", {"response_format": SCHEMA}, mode="batch")
    _, records = generate(config, tmp_path, 2, state_dir=tmp_path / "batches")
    assert [parsed(r["responses"][0]["text"]) for r in records] == [ANSWER, ANSWER]


def test_a_generate_run_then_the_format_filter(fault_server: FaultServer, tmp_path: Path):
    answers = iter([json.dumps(ANSWER), '{"name": "apple", "kind": "nut", "colors": []}'])
    fault_server.answer = lambda body: next(answers)
    config = api_config(fault_server, "openai", {"response_format": SCHEMA})
    _, records = generate(config, tmp_path, 2)
    filter = FormatFilter(FormatOptions(type="format"), config)
    verdicts = [filter.decide(r, s) for r, s in zip(records, filter.score(records), strict=True)]
    assert sorted((v.keep, v.reason) for v in verdicts) == [
        (False, "response 0: $.kind: 'nut' is not one of ['fruit', 'vegetable']"),
        (True, None),
    ]
    assert ANSWER in [r["responses"][0].get("parsed") for r in records]


def test_the_vllm_engine_gets_structured_outputs_in_its_sampling_params():
    engine = StandInEngine()
    api = VllmApi(
        functools.partial(StandInLLM, engine), SamplingParams, RequestOutputKind.FINAL_ONLY,
        StructuredOutputsParams,
    )  # fmt: skip
    teacher = VllmTeacher(VllmOptions.model_construct(model="org/model"), api=lambda: api)
    resolve(teacher, [asked(), asked("json", id="j"), Request("p", Params(max_tokens=2), FRUIT)])
    sent = {rid: params.structured_outputs for rid, params in engine.params.items()}
    assert sorted(sent.values(), key=repr) == sorted(
        [StructuredOutputsParams(json=SCHEMA), StructuredOutputsParams(json_object=True), None],
        key=repr,
    )


def test_older_vllm_takes_guided_decoding_instead():
    from distillpipe.teachers.vllm import structured_kwargs

    api = VllmApi(StandInLLM, SamplingParams, None, StructuredOutputsParams, "guided_decoding")
    call = Call(asked(), 0, "v2:sha256:" + "0" * 64, 1)
    assert structured_kwargs(call, api) == {"guided_decoding": StructuredOutputsParams(json=SCHEMA)}
    # sent in the schema's own key order (properties steer what is written first)
    assert orjson.dumps(asked().response_format.schema) == orjson.dumps(SCHEMA)


def test_rejection_sampling_against_the_format_filter(fault_server: FaultServer, tmp_path):
    """generate.until draws samples until one validates (the first two do not)."""
    answers = iter(['{"name": "apple"}', "An apple is red.", *[json.dumps(ANSWER)] * 8])
    fault_server.answer = lambda body: next(answers)
    data = {
        "seed": 1,
        "teacher": {"backend": "openai", "model": "gpt-4o-mini", "api_key": "sk-test",
                    "base_url": f"{fault_server.url}/v1", "concurrency": 1},
        "generate": {"max_tokens": 16, "response_format": SCHEMA,
                     "until": {"filter": "format", "k": 1, "step": 2}},
        "filter": [{"type": "format"}],
    }  # fmt: skip
    config = parse_config(data, ConfigSource("test.yaml", None))
    _, [record] = generate(config, tmp_path, 1)
    assert record["sampling"] == {"filter": "format", "drawn": 4, "passed": [2, 3]}
