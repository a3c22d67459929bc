"""The openai backend against a real OpenAI-compatible server (llama.cpp's, on loopback),
and what each model family is sent, against the fault server's checks of the real API."""

import asyncio
from pathlib import Path
from typing import Any

import pytest
from api_runs import api_config, generate
from fault_server import REASONING_TOKENS, FaultServer

from distillpipe.cache import ResponseCache
from distillpipe.config import load_config
from distillpipe.dispatch import Dispatcher, call_key
from distillpipe.errors import ConfigError, FatalTeacherError, MissingApiKeyError
from distillpipe.models import file_fingerprint
from distillpipe.teachers.base import Request, SamplingParams
from distillpipe.teachers.cost import find_price
from distillpipe.teachers.openai import OpenAIOptions, OpenAITeacher

PARAMS = SamplingParams(temperature=0.7, max_tokens=8)


def teacher_for(base_url: str, mode: str, **options) -> OpenAITeacher:
    return OpenAITeacher(
        OpenAIOptions(model="gemma", base_url=base_url, mode=mode, concurrency=2, **options)
    )


def resolve(teacher: OpenAITeacher, requests: list[Request]):
    async def run():
        try:
            return await Dispatcher(teacher, None, config_seed=3).resolve(requests)
        finally:
            await teacher.aclose()

    return asyncio.run(run())


def test_chat_completions_endpoint(llama_server: str):
    requests = [
        Request(id=f"c{i}", params=PARAMS, messages=({"role": "user", "content": q},))
        for i, q in enumerate(["Name a colour.", "Name a fruit.", "Name a city."])
    ]
    answers = resolve(teacher_for(llama_server, "chat"), requests)
    assert len(answers) == 3
    for [completion] in answers:
        assert completion.text.strip()
        assert completion.finish_reason in {"stop", "length"}
        assert completion.completion_tokens > 0


def test_completions_endpoint_with_n_samples(llama_server: str):
    request = Request(id="p", params=PARAMS, prompt="My favourite animal is", n=2)
    [samples] = resolve(teacher_for(llama_server, "completion"), [request])
    assert len(samples) == 2
    assert all(sample.text.strip() for sample in samples)


def test_an_unknown_endpoint_is_a_fatal_error_naming_the_request(llama_server: str):
    teacher = teacher_for(llama_server.replace("/v1", "/nope"), "chat", max_retries=0)
    request = Request(id="lost", params=PARAMS, messages=({"role": "user", "content": "Hi"},))
    with pytest.raises(FatalTeacherError, match=r"request lost: HTTP 404"):
        resolve(teacher, [request])


def test_a_remote_endpoint_without_a_key_fails_before_any_request(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(MissingApiKeyError, match=r"set OPENAI_API_KEY or teacher\.api_key"):
        OpenAITeacher(OpenAIOptions(model="gpt-4o-mini"))


def test_a_local_endpoint_needs_no_key(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    OpenAITeacher(OpenAIOptions(model="m", base_url="http://127.0.0.1:8000/v1"))


# -- model families: what is sent ------------------------------------------------

MESSAGES = (
    {"role": "system", "content": "Be terse."},
    {"role": "user", "content": "Name a river."},
)
EVERY_KNOB = SamplingParams(
    temperature=0.7, top_p=0.9, max_tokens=64, presence_penalty=0.5, frequency_penalty=0.25
)
FAMILIES = {  # model, teacher options -> the body's fields besides model, seed and messages
    "plain chat model": (
        "gpt-4o-mini",
        {},
        {"max_tokens": 64, "temperature": 0.7, "top_p": 0.9,
         "presence_penalty": 0.5, "frequency_penalty": 0.25},
    ),
    "o-series": (
        "o3-mini-2025-01-31",
        {"reasoning_effort": "high"},
        {"max_completion_tokens": 64, "reasoning_effort": "high"},
    ),
    "o1-mini (no reasoning_effort)": ("o1-mini", {}, {"max_completion_tokens": 64}),
    "gpt-5": (
        "gpt-5-mini",
        {"reasoning_effort": "minimal"},
        {"max_completion_tokens": 64, "reasoning_effort": "minimal"},
    ),
}  # fmt: skip


def fault_teacher(server: FaultServer, model: str, **options: Any) -> OpenAITeacher:
    return OpenAITeacher(
        OpenAIOptions(model=model, base_url=f"{server.url}/v1", api_key="sk-test", **options)
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_is_sent_exactly_what_it_accepts(fault_server: FaultServer, family: str):
    model, options, fields = FAMILIES[family]
    teacher = fault_teacher(fault_server, model, **options)
    request = Request("q", EVERY_KNOB, MESSAGES)
    [call] = Dispatcher(teacher, None, config_seed=3).calls_for(request)
    [[completion]] = resolve(teacher, [request])
    assert fault_server.rejected == []
    [sent] = fault_server.received
    assert sent["body"] == {"model": model, **fields, "seed": call.seed, "messages": list(MESSAGES)}
    reasoning = REASONING_TOKENS if "max_completion_tokens" in fields else 0
    assert completion.reasoning_tokens == reasoning
    assert completion.completion_tokens == len(completion.text.split()) + reasoning


@pytest.mark.parametrize("mode", ["chat", "batch"])
@pytest.mark.parametrize("family", FAMILIES)
def test_a_run_with_each_family_finishes_and_bills_reasoning_once(
    fault_server: FaultServer, tmp_path: Path, family: str, mode: str
):
    model, options, fields = FAMILIES[family]
    config = api_config(
        fault_server, model=model, mode=mode, generate={"temperature": 0.2}, **options
    )
    result, records = generate(config, tmp_path, 4, state_dir=tmp_path / "batches")
    assert fault_server.rejected == []
    assert [r["responses"][0]["text"] for r in records] == [
        f"echo: Say the number {i} in words." for i in range(4)
    ]
    stats = result.stats["teacher"]
    reasoning = REASONING_TOKENS if "max_completion_tokens" in fields else 0
    assert stats["reasoning_tokens"] == 4 * reasoning
    usage = records[0]["responses"][0]["usage"]
    assert usage.get("reasoning_tokens", 0) == reasoning
    price = find_price(model)  # reasoning is inside completion_tokens: billed once, as output
    assert price is not None
    expected = stats["prompt_tokens"] * price.input + stats["completion_tokens"] * price.output
    assert stats["cost_usd"] == pytest.approx(expected / 1e6 * (0.5 if mode == "batch" else 1))


def test_the_rules_table_is_what_keeps_rejected_parameters_out(fault_server: FaultServer):
    """Override o3's row with an empty one (a plain model): the old body goes out, and
    the server answers 400 as the real API does."""
    teacher = fault_teacher(fault_server, "o3", model_rules={"o3": {}}, max_retries=0)
    with pytest.raises(FatalTeacherError, match=r"request q: HTTP 400.*'max_tokens'"):
        resolve(teacher, [Request("q", EVERY_KNOB, MESSAGES)])
    assert len(fault_server.rejected) == 1


def test_a_new_family_is_a_row_in_the_config(fault_server: FaultServer):
    """o4 (not o4-mini) has no built-in row: a plain model's body would be refused."""
    rule = {"max_tokens_key": "max_completion_tokens", "drop": ["temperature", "top_p",
            "presence_penalty", "frequency_penalty"], "reasoning_effort": ["low"]}  # fmt: skip
    teacher = fault_teacher(fault_server, "o4", model_rules={"o4": rule}, reasoning_effort="low")
    resolve(teacher, [Request("q", EVERY_KNOB, MESSAGES)])
    assert fault_server.rejected == []
    [sent] = fault_server.received
    assert {k: v for k, v in sent["body"].items() if k not in ("seed", "messages")} == {
        "model": "o4", "max_completion_tokens": 64, "reasoning_effort": "low"
    }  # fmt: skip


def test_a_request_built_outside_a_config_is_refused_before_it_is_sent(
    fault_server: FaultServer,
):
    request = Request("q", SamplingParams(top_logprobs=5), MESSAGES)
    with pytest.raises(ConfigError, match=r"request q: top_logprobs: o3 does not accept"):
        resolve(fault_teacher(fault_server, "o3"), [request])
    assert fault_server.received == [] and fault_server.rejected == []


def write_config(tmp_path: Path, teacher: str, generate: str = "") -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        "teacher:\n  backend: openai\n  api_key: sk-test\n"
        + teacher
        + "generate:\n  max_tokens: 64\n"
        + generate
    )
    return path


@pytest.mark.parametrize(
    ("teacher", "generate", "error"),
    [
        ("  model: o3\n", "  top_logprobs: 5\n",
         r"config\.yaml:7: generate\.top_logprobs: o3 does not accept top_logprobs"),
        ("  model: gpt-5\n", "  stop: [END]\n",
         r"config\.yaml:7: generate\.stop: gpt-5 does not accept stop"),
        ("  model: gpt-4o-mini\n  reasoning_effort: low\n", "",
         r"config\.yaml:5: teacher\.reasoning_effort: gpt-4o-mini takes no reasoning_effort"),
        ("  model: o3\n  reasoning_effort: minimal\n", "",
         r"config\.yaml:5: teacher\.reasoning_effort: 'minimal' is not one o3 takes "
         r"\(low, medium, high\)"),
        ("  model: o1-mini\n  reasoning_effort: low\n", "",
         r"teacher\.reasoning_effort: o1-mini takes no reasoning_effort"),
        ("  model: o4-mini\n  mode: completion\n", "",
         r"config\.yaml:5: teacher\.mode: o4-mini answers chat requests only"),
    ],
)  # fmt: skip
def test_what_a_model_rejects_fails_at_config_validation_naming_the_key(
    tmp_path: Path, teacher: str, generate: str, error: str
):
    with pytest.raises(ConfigError, match=error):
        load_config(write_config(tmp_path, teacher, generate))


def test_a_reasoning_models_penalties_and_temperature_are_not_errors(tmp_path: Path):
    """The stages' own defaults set them (self_instruct's presence_penalty is 2.0): they are
    left out of the request, not refused."""
    load_config(
        write_config(tmp_path, "  model: o3\n", "  temperature: 0.2\n  presence_penalty: 1.0\n")
    )


def test_the_cache_key_holds_what_is_sent(fault_server: FaultServer):
    def key(model: str, params: SamplingParams, **options: Any) -> str:
        teacher = fault_teacher(fault_server, model, **options)
        [call] = Dispatcher(teacher, None).calls_for(Request("q", params, MESSAGES))
        return call.key

    cold, hot = SamplingParams(temperature=0.0), SamplingParams(temperature=1.0)
    assert key("o3", cold) == key("o3", hot), "a parameter o3 is never sent split the key"
    assert key("gpt-4o-mini", cold) != key("gpt-4o-mini", hot)
    assert key("o3", cold, reasoning_effort="low") != key("o3", cold, reasoning_effort="high")
    assert key("o3", cold) != key("o3", cold, reasoning_effort="high")
    plain = Request("q", cold, MESSAGES)  # a plain model's key is what it was before the rules
    identity = fault_teacher(fault_server, "gpt-4o-mini").identity
    assert key("gpt-4o-mini", cold) == call_key(identity, plain, 0, 0)


def test_llama_cpp_s_server_is_known_by_the_gguf_it_serves(llama_server: str, gguf_path: Path):
    identity = OpenAITeacher.identify(OpenAIOptions(model="gemma", base_url=llama_server))
    assert identity == {
        "backend": "openai",
        "model": "gemma",
        "endpoint": llama_server,
        "serves": {"id": {"file": file_fingerprint(gguf_path)}},  # it lists the model's path
    }


def test_a_local_server_that_reports_another_model_is_asked_again(
    fault_server: FaultServer, tmp_path: Path
):
    """``model: local`` names nothing; what ``/v1/models`` reports goes into the key."""
    cache = ResponseCache(tmp_path / "c.sqlite")
    request = Request(id="q", params=PARAMS, messages=({"role": "user", "content": "Hi"},))

    def teacher_calls() -> int:
        teacher = OpenAITeacher(OpenAIOptions(model="local", base_url=f"{fault_server.url}/v1"))
        dispatcher = Dispatcher(teacher, cache, config_seed=3)

        async def run() -> None:
            try:
                await dispatcher.resolve([request])
            finally:
                await teacher.aclose()

        asyncio.run(run())
        return dispatcher.stats.teacher_calls

    fault_server.models = [{"id": "local", "root": "/models/qwen2.5-7b"}]  # vLLM: name and weights
    assert teacher_calls() == 1
    assert teacher_calls() == 0
    fault_server.models = [{"id": "local", "root": "/models/llama-3.1-8b"}]
    assert teacher_calls() == 1
    cache.close()


def test_a_model_file_a_local_server_reports_is_known_by_its_content(
    fault_server: FaultServer, tmp_path: Path
):
    weights, renamed, other = tmp_path / "a.gguf", tmp_path / "b.gguf", tmp_path / "c.gguf"
    weights.write_bytes(b"the weights")
    renamed.write_bytes(b"the weights")
    other.write_bytes(b"other weights")
    options = OpenAIOptions(model="local", base_url=f"{fault_server.url}/v1")

    def identity_serving(path: Path) -> dict:
        fault_server.models = [{"id": str(path), "object": "model"}]
        return OpenAITeacher.identify(options)

    assert identity_serving(weights)["serves"] == {"id": {"file": file_fingerprint(weights)}}
    assert identity_serving(renamed) == identity_serving(weights)
    assert identity_serving(other) != identity_serving(weights)


def test_an_endpoint_that_tells_no_more_than_the_name_is_keyed_by_endpoint_and_name(
    fault_server: FaultServer,
):
    options = OpenAIOptions(model="llama3:8b", base_url=f"{fault_server.url}/v1")
    plain = {"backend": "openai", "model": "llama3:8b", "endpoint": f"{fault_server.url}/v1"}
    assert OpenAITeacher.identify(options) == plain  # its /v1/models is a 404
    fault_server.models = [{"id": "qwen2:7b"}, {"id": "llama3:8b"}]  # Ollama lists all it holds
    assert OpenAITeacher.identify(options) == plain
    down = OpenAIOptions(model="local", base_url="http://127.0.0.1:9/v1")  # nothing listens
    assert "serves" not in OpenAITeacher.identify(down)
    remote = OpenAIOptions(model="gpt-4o-mini", api_key="sk-test")  # a remote API is not asked
    assert OpenAITeacher.identify(remote) == {
        "backend": "openai", "model": "gpt-4o-mini", "endpoint": "https://api.openai.com/v1"
    }  # fmt: skip
