import asyncio
from pathlib import Path

import pytest
from fault_server import FaultServer

from distillpipe.cache import ResponseCache
from distillpipe.dispatch import Dispatcher, call_key, seed_from_key
from distillpipe.errors import FatalTeacherError
from distillpipe.teachers.base import Request, SamplingParams
from distillpipe.teachers.llamacpp import LlamaCppOptions, LlamaCppTeacher
from distillpipe.teachers.openai import OpenAIOptions, OpenAITeacher

PARAMS = SamplingParams(temperature=0.8, max_tokens=6)


def prompt_request(text: str, n: int = 1) -> Request:
    return Request(id=text[:8], params=PARAMS, prompt=f"Q: {text}\nA:", n=n)


def paid_teacher(server: FaultServer) -> OpenAITeacher:
    """A paid API's wire format, served by the fault server, which counts what it answers."""
    options = OpenAIOptions(model="gpt-4o-mini", base_url=f"{server.url}/v1", api_key="sk-test",
                            mode="completion", max_retries=0, timeout=5.0)  # fmt: skip
    return OpenAITeacher(options)


def answered(server: FaultServer) -> int:
    return sum(server.answered.values())


M = {"backend": "llamacpp", "model": "m", "gguf": "sha256:aa"}


def test_keys_depend_on_model_content_params_seed_and_sample():
    request = prompt_request("What is 2 + 2?")
    base = call_key(M, request, 0, 0)
    assert base == call_key(M, prompt_request("What is 2 + 2?"), 0, 0)
    assert base != call_key({**M, "model": "other-model"}, request, 0, 0)
    assert base != call_key(M, prompt_request("What is 3 + 3?"), 0, 0)
    assert base != call_key(M, request, 1, 0)
    assert base != call_key(M, request, 0, 1)
    hotter = Request(id="x", params=SamplingParams(temperature=1.0, max_tokens=6),
                     prompt=request.prompt)  # fmt: skip
    assert base != call_key(M, hotter, 0, 0)


def test_a_key_names_its_format_version_and_the_seed_comes_from_its_digest():
    key = call_key(M, prompt_request("What is 2 + 2?"), 0, 0)
    version, algorithm, digest = key.split(":")
    assert (version, algorithm, len(digest)) == ("v2", "sha256", 64)
    assert seed_from_key(key) == int(digest[:8], 16) & 0x7FFFFFFF


def test_one_model_name_on_two_files_gets_two_keys_and_a_renamed_copy_the_same(tmp_path: Path):
    """The key holds the GGUF's content, not the declared ``model`` (no model loads here)."""
    first, second = tmp_path / "first.gguf", tmp_path / "second.gguf"
    first.write_bytes(b"GGUF-like weights, one")
    second.write_bytes(b"GGUF-like weights, two")
    renamed = tmp_path / "moved" / "renamed.gguf"
    renamed.parent.mkdir()
    renamed.write_bytes(first.read_bytes())

    def keys(path: Path) -> list[str]:
        teacher = LlamaCppTeacher(LlamaCppOptions(model="same-name", model_path=str(path)))
        calls = Dispatcher(teacher, None, config_seed=1).calls_for(prompt_request("x", n=2))
        return [call.key for call in calls]

    assert keys(first) != keys(second)
    assert keys(renamed) == keys(first)


def test_a_second_resolve_is_answered_by_the_cache_alone(tmp_path: Path):
    teacher = LlamaCppTeacher(LlamaCppOptions(n_ctx=256))
    cache = ResponseCache(tmp_path / "c.sqlite")
    requests = [prompt_request("Name a colour.", n=2), prompt_request("Name a fruit.")]

    first = Dispatcher(teacher, cache, config_seed=5)
    answers = asyncio.run(first.resolve(requests))
    assert [len(group) for group in answers] == [2, 1]
    assert first.stats.teacher_calls == 3 and first.stats.cache_hits == 0
    assert all(c.completion_tokens > 0 and c.model == "gemma-3-270m-q4_k_m"
               for group in answers for c in group)  # fmt: skip

    second = Dispatcher(teacher, cache, config_seed=5)
    assert asyncio.run(second.resolve(requests)) == answers
    assert second.stats.teacher_calls == 0 and second.stats.cache_hits == 3
    asyncio.run(teacher.aclose())


def test_samples_of_one_request_get_distinct_seeds():
    teacher = LlamaCppTeacher(LlamaCppOptions())
    calls = Dispatcher(teacher, None, config_seed=1).calls_for(prompt_request("x", n=4))
    assert [call.sample for call in calls] == [0, 1, 2, 3]
    assert len({call.seed for call in calls}) == 4
    assert len({call.key for call in calls}) == 4


def test_map_ordered_yields_in_input_order_across_batches(tmp_path: Path):
    teacher = LlamaCppTeacher(LlamaCppOptions(n_ctx=256))
    dispatcher = Dispatcher(teacher, ResponseCache(tmp_path / "c.sqlite"), config_seed=2)
    items = [f"item {i}" for i in range(7)]

    async def collect():
        out = []
        async for item, (completions,) in dispatcher.map_ordered(
            items, lambda text: [prompt_request(text)], batch_size=3
        ):
            out.append((item, len(completions)))
        await teacher.aclose()
        return out

    assert asyncio.run(collect()) == [(item, 1) for item in items]
    assert dispatcher.stats.requests == 7


def test_identical_calls_in_one_resolve_are_sent_once(fault_server: FaultServer, tmp_path: Path):
    teacher = paid_teacher(fault_server)
    dispatcher = Dispatcher(teacher, ResponseCache(tmp_path / "c.sqlite"), config_seed=3)
    colour, fruit = prompt_request("Name a colour."), prompt_request("Name a fruit.")

    async def resolve():
        try:
            return await dispatcher.resolve([colour, fruit, colour, colour])
        finally:
            await teacher.aclose()

    answers = asyncio.run(resolve())
    assert answered(fault_server) == 2
    assert answers[0] == answers[2] == answers[3] != answers[1]
    stats = dispatcher.stats
    assert stats.calls == 4 and stats.cache_hits == 0
    assert stats.teacher_calls == 2 and stats.duplicate_calls == 2


def test_a_repeat_in_a_later_batch_waits_for_the_call_in_flight(
    fault_server: FaultServer, tmp_path: Path
):
    fault_server.latency = 0.3  # the first batch is still in flight when the later ones start
    teacher = paid_teacher(fault_server)
    dispatcher = Dispatcher(teacher, ResponseCache(tmp_path / "c.sqlite"), config_seed=3)
    items = ["Name a colour.", "Name a colour.", "Name a fruit.", "Name a colour."]

    async def collect():
        try:
            return [
                (item, completions[0])
                async for item, (completions,) in dispatcher.map_ordered(
                    items, lambda text: [prompt_request(text)], batch_size=1
                )
            ]
        finally:
            await teacher.aclose()

    out = asyncio.run(collect())
    assert [item for item, _ in out] == items
    assert out[0][1] == out[1][1] == out[3][1] != out[2][1]
    assert answered(fault_server) == 2
    assert dispatcher.stats.teacher_calls == 2 and dispatcher.stats.duplicate_calls == 2


def test_a_call_that_fails_fails_everyone_waiting_for_it(fault_server: FaultServer):
    fault_server.set_fault("401")
    teacher = paid_teacher(fault_server)
    dispatcher = Dispatcher(teacher, None)
    request = prompt_request("Name a colour.")

    async def both():
        try:
            return await asyncio.wait_for(
                asyncio.gather(
                    dispatcher.resolve([request]),
                    dispatcher.resolve([request]),
                    return_exceptions=True,
                ),
                timeout=30,
            )
        finally:
            await teacher.aclose()

    outcomes = asyncio.run(both())
    assert [type(outcome) for outcome in outcomes] == [FatalTeacherError, FatalTeacherError]
    assert sum(fault_server.attempts.values()) == 1


def test_when_the_sender_is_cancelled_a_waiter_sends_the_call_itself(fault_server: FaultServer):
    fault_server.latency = 0.5
    teacher = paid_teacher(fault_server)
    dispatcher = Dispatcher(teacher, None)
    request = prompt_request("Name a colour.")

    async def cancel_the_sender():
        try:
            sender = asyncio.ensure_future(dispatcher.resolve([request]))
            waiter = asyncio.ensure_future(dispatcher.resolve([request]))
            await asyncio.sleep(0.1)
            sender.cancel()
            with pytest.raises(asyncio.CancelledError):
                await sender
            return await asyncio.wait_for(waiter, timeout=30)
        finally:
            await teacher.aclose()

    [[completion]] = asyncio.run(cancel_the_sender())
    assert completion.text == "echo: Q: Name a colour.\nA:"
    assert dispatcher.stats.teacher_calls == 1 and dispatcher.stats.duplicate_calls == 0


def test_a_cancelled_waiter_leaves_the_call_it_waited_for_alone(fault_server: FaultServer):
    fault_server.latency = 0.3
    teacher = paid_teacher(fault_server)
    dispatcher = Dispatcher(teacher, None)
    request = prompt_request("Name a colour.")

    async def cancel_the_waiter():
        try:
            sender = asyncio.ensure_future(dispatcher.resolve([request]))
            waiter = asyncio.ensure_future(dispatcher.resolve([request]))
            await asyncio.sleep(0.1)
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
            return await asyncio.wait_for(sender, timeout=30)
        finally:
            await teacher.aclose()

    [[completion]] = asyncio.run(cancel_the_waiter())
    assert completion.text == "echo: Q: Name a colour.\nA:"
    assert answered(fault_server) == 1
