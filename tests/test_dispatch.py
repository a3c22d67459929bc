import asyncio
from pathlib import Path

from distillpipe.cache import ResponseCache
from distillpipe.dispatch import Dispatcher, call_key, seed_from_key
from distillpipe.teachers.base import Request, SamplingParams
from distillpipe.teachers.llamacpp import LlamaCppOptions, LlamaCppTeacher

PARAMS = SamplingParams(temperature=0.8, max_tokens=6)


def prompt_request(text: str, n: int = 1) -> Request:
    return Request(id=text[:8], params=PARAMS, prompt=f"Q: {text}\nA:", n=n)


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
