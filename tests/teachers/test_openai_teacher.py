"""The openai backend against a real OpenAI-compatible server: llama.cpp's, on loopback."""

import asyncio

import pytest

from distillpipe.dispatch import Dispatcher
from distillpipe.errors import FatalTeacherError, MissingApiKeyError
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
