"""Top-k log-probabilities through the OpenAI-compatible path, against llama.cpp's real server."""

import asyncio

import pytest

from distillpipe.dispatch import Dispatcher
from distillpipe.teachers.base import Request, SamplingParams, compact_logprobs
from distillpipe.teachers.openai import OpenAIOptions, OpenAITeacher


def resolve(base_url: str, mode: str, request: Request):
    teacher = OpenAITeacher(OpenAIOptions(model="gemma", base_url=base_url, mode=mode))

    async def run():
        try:
            return await Dispatcher(teacher, None, config_seed=2).resolve([request])
        finally:
            await teacher.aclose()

    [[completion]] = asyncio.run(run())
    return completion


def assert_top_k_rows(rows: list, k: int, completion_tokens: int) -> None:
    assert len(rows) == completion_tokens
    for token, logprob, top in rows:
        assert isinstance(token, str) and logprob <= 0.0
        assert len(top) == k
        assert all(lp <= 0.0 for lp in top.values())
        if token in top:  # the sampled token, when among the top k, has the same logprob
            assert top[token] == pytest.approx(logprob)


@pytest.mark.slow
@pytest.mark.parametrize("k", [1, 4])
def test_chat_keeps_the_top_k_per_generated_token(llama_server: str, k: int):
    params = SamplingParams(temperature=0.8, max_tokens=5, top_logprobs=k)
    request = Request(id="c", params=params, messages=({"role": "user", "content": "Hi"},))
    completion = resolve(llama_server, "chat", request)
    assert_top_k_rows(completion.logprobs, k, completion.completion_tokens)
    assert "".join(row[0] for row in completion.logprobs) == completion.text


@pytest.mark.slow
def test_completions_keep_the_top_k_per_generated_token(llama_server: str):
    params = SamplingParams(temperature=0.8, max_tokens=5, top_logprobs=3)
    completion = resolve(llama_server, "completion", Request(id="p", params=params, prompt="I"))
    assert_top_k_rows(completion.logprobs, 3, completion.completion_tokens)
    assert completion.to_response(0)["logprobs"] == completion.logprobs


def test_without_top_logprobs_nothing_is_asked_or_stored(llama_server: str):
    params = SamplingParams(temperature=0.8, max_tokens=3)
    request = Request(id="n", params=params, messages=({"role": "user", "content": "Hi"},))
    assert resolve(llama_server, "chat", request).logprobs is None


def test_the_sampled_token_a_server_adds_beyond_the_top_k_is_dropped():
    chat_shaped = {
        "content": [
            {
                "token": "If",
                "logprob": -5.3,
                "top_logprobs": [
                    {"token": "Hi", "logprob": -2.4},
                    {"token": "I", "logprob": -3.9},
                    {"token": "If", "logprob": -5.3},
                ],
            }
        ]
    }
    assert compact_logprobs(chat_shaped, top_k=2) == [["If", -5.3, {"Hi": -2.4, "I": -3.9}]]
    assert compact_logprobs(chat_shaped)[0][2] == {"Hi": -2.4, "I": -3.9, "If": -5.3}
