import asyncio

import pytest

from distillpipe.dispatch import Dispatcher
from distillpipe.errors import FatalTeacherError
from distillpipe.teachers.base import Request, SamplingParams
from distillpipe.teachers.llamacpp import LlamaCppOptions, LlamaCppTeacher


def resolve(teacher: LlamaCppTeacher, requests: list[Request], seed: int = 0):
    return asyncio.run(Dispatcher(teacher, None, config_seed=seed).resolve(requests))


@pytest.fixture(scope="module")
def teacher():
    teacher = LlamaCppTeacher(LlamaCppOptions(n_ctx=512))
    yield teacher
    asyncio.run(teacher.aclose())


def test_completion_mode_continues_a_raw_prompt(teacher: LlamaCppTeacher):
    request = Request(
        id="r1",
        params=SamplingParams(temperature=0.0, max_tokens=12),
        prompt="The three primary colours are",
    )
    [[completion]] = resolve(teacher, [request])
    assert completion.text.strip()
    assert completion.finish_reason in {"stop", "length"}
    assert completion.prompt_tokens > 0 and 0 < completion.completion_tokens <= 12


def test_chat_mode_uses_the_gemma_chat_template(teacher: LlamaCppTeacher):
    assert teacher._chat_format() == "gemma"
    request = Request(
        id="r2",
        params=SamplingParams(temperature=0.0, max_tokens=12),
        messages=({"role": "user", "content": "Say hello."},),
    )
    [[completion]] = resolve(teacher, [request])
    assert completion.text.strip()
    assert "[INST]" not in completion.text


def test_stop_sequences_end_the_text(teacher: LlamaCppTeacher):
    request = Request(
        id="r3",
        params=SamplingParams(temperature=0.0, max_tokens=32, stop=("\n",)),
        prompt="1. apples\n2. pears\n3.",
    )
    [[completion]] = resolve(teacher, [request])
    assert "\n" not in completion.text
    assert completion.finish_reason == "stop"


def test_the_same_seed_gives_the_same_samples_and_samples_differ(teacher: LlamaCppTeacher):
    request = Request(
        id="r4",
        params=SamplingParams(temperature=1.0, max_tokens=16),
        prompt="Once upon a time",
        n=3,
    )
    [first] = resolve(teacher, [request], seed=11)
    [again] = resolve(teacher, [request], seed=11)
    assert [c.text for c in first] == [c.text for c in again]
    assert len({c.text for c in first}) > 1


def test_a_prompt_longer_than_the_context_is_a_fatal_error_naming_the_request():
    small = LlamaCppTeacher(LlamaCppOptions(n_ctx=128))
    request = Request(id="too-long", params=SamplingParams(max_tokens=4), prompt="word " * 400)
    with pytest.raises(FatalTeacherError, match="request too-long"):
        resolve(small, [request])
    asyncio.run(small.aclose())
