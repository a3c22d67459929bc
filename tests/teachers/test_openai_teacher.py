"""The openai backend against a real OpenAI-compatible server: llama.cpp's, on loopback."""

import asyncio
from pathlib import Path

import pytest
from fault_server import FaultServer

from distillpipe.cache import ResponseCache
from distillpipe.dispatch import Dispatcher
from distillpipe.errors import FatalTeacherError, MissingApiKeyError
from distillpipe.models import file_fingerprint
from distillpipe.teachers.base import Request, SamplingParams
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
