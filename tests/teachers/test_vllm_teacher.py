"""The vllm backend without a GPU: requests → engine prompts and SamplingParams,
engine outputs → completions and compact top-k logprobs, and the engine loop
that hands each completion to the cache the moment its request finishes.

vllm.LLM is replaced by a stand-in (vllm_standin.py) whose engine behaves as
vLLM's ``LLMEngine``: requests added, then stepped with continuous batching,
finishing at different steps, in vLLM's output types (vllm_types.py: vLLM's own
classes where importable, else a recorded copy of them). Loading a real
``vllm.LLM`` needs a GPU; that path runs in bench/gpu_vllm.py.
"""

from __future__ import annotations

import asyncio
import functools
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from vllm_standin import StandInEngine, StandInLLM
from vllm_standin import tokenizer as standin_tokenizer
from vllm_types import Logprob, RequestOutputKind, SamplingParams

import distillpipe.teachers.vllm as vllm_backend
from distillpipe.cache import ResponseCache
from distillpipe.config import load_config
from distillpipe.dispatch import Dispatcher
from distillpipe.errors import ConfigError, FatalTeacherError, MissingDependencyError
from distillpipe.teachers.base import Request
from distillpipe.teachers.base import SamplingParams as Params
from distillpipe.teachers.vllm import (
    VllmApi,
    VllmOptions,
    VllmTeacher,
    compact_vllm_logprobs,
    engine_kwargs,
    sampling_kwargs,
)

CONFIGS = Path(__file__).parents[2] / "configs"
SEED = 11


@pytest.fixture
def vllm_present(monkeypatch: pytest.MonkeyPatch) -> None:
    """Validation as on a machine with the extra installed."""
    monkeypatch.setattr(vllm_backend, "vllm_installed", lambda: True)


def teacher_with(engine: StandInEngine | None = None, *, final_only: bool = True, **options):
    """The backend on the stand-in: vllm.LLM is StandInLLM, holding ``engine`` if given."""
    api = VllmApi(
        functools.partial(StandInLLM, engine) if engine else StandInLLM,
        SamplingParams,
        RequestOutputKind.FINAL_ONLY if final_only else None,
    )
    return VllmTeacher(VllmOptions.model_construct(model="org/model", **options), api=lambda: api)


def resolve(teacher: VllmTeacher, requests: list[Request], cache: ResponseCache | None = None):
    async def run():
        try:
            return await Dispatcher(teacher, cache, config_seed=SEED).resolve(requests)
        finally:
            await teacher.aclose()

    return asyncio.run(run())


def seeds_of(request: Request) -> list[int]:
    """The sampling seeds the dispatcher draws for the request's samples."""
    return [call.seed for call in Dispatcher(teacher_with(), None, SEED).calls_for(request)]


def chat(id: str, text: str, n: int = 1, **params) -> Request:
    params.setdefault("max_tokens", 2)
    return Request(
        id=id, params=Params(**params), messages=({"role": "user", "content": text},), n=n
    )


def prompt_texts(engine: StandInEngine) -> list[str]:
    """What the engine was asked, in the order the requests were added."""
    decode = standin_tokenizer().decode
    return [decode(ids, skip_special_tokens=True) for ids in engine.prompts.values()]


def test_choosing_vllm_without_it_fails_at_validation_with_the_install_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(vllm_backend, "vllm_installed", lambda: False)
    config = tmp_path / "c.yaml"
    config.write_text("teacher:\n  backend: vllm\n  model: org/model\n")
    with pytest.raises(MissingDependencyError) as error:
        load_config(config)
    assert str(error.value) == (
        "teacher.backend: vllm needs an optional dependency: pip install 'distillpipe[vllm]'"
    )


def test_a_mistyped_engine_option_is_named_before_the_missing_dependency(tmp_path: Path):
    config = tmp_path / "c.yaml"
    config.write_text("teacher:\n  backend: vllm\n  model: m\n  gpu_memory_utilisation: 0.8\n")
    with pytest.raises(ConfigError, match=r"c\.yaml:4: unknown key 'teacher\.gpu_memory_utilis"):
        load_config(config)


def test_the_shipped_vllm_config_maps_to_engine_arguments(vllm_present: None):
    config = load_config(CONFIGS / "vllm.yaml")
    kwargs = engine_kwargs(config.teacher)
    assert kwargs["model"] == config.teacher.model
    assert kwargs["enable_prefix_caching"] is True
    assert kwargs["gpu_memory_utilization"] == config.teacher.gpu_memory_utilization
    assert config.generate.batch_size >= 512  # whole chunks keep continuous batching busy


def test_engine_options_and_extra_engine_args(vllm_present: None):
    options = VllmOptions(
        model="org/model",
        tensor_parallel_size=2,
        max_model_len=4096,
        dtype="bfloat16",
        quantization="awq",
        enable_prefix_caching=False,
        engine_args={"enforce_eager": True},
    )
    assert engine_kwargs(options) == {
        "model": "org/model",
        "tensor_parallel_size": 2,
        "gpu_memory_utilization": 0.9,
        "dtype": "bfloat16",
        "enable_prefix_caching": False,
        "trust_remote_code": False,
        "seed": 0,
        "max_model_len": 4096,
        "quantization": "awq",
        "enforce_eager": True,
    }


def test_each_sample_is_one_seeded_sampling_params_that_vllm_accepts():
    request = chat("q", "Hi", n=3, temperature=0.5, top_p=0.9, stop=("###",), top_logprobs=4)
    calls = Dispatcher(teacher_with(), None, config_seed=11).calls_for(request)
    mapped = [sampling_kwargs(call) for call in calls]
    assert [m["seed"] for m in mapped] == [call.seed for call in calls]
    assert len({m["seed"] for m in mapped}) == 3
    assert mapped[0] | {"seed": 0} == {
        "n": 1,
        "temperature": 0.5,
        "top_p": 0.9,
        "max_tokens": 2,
        "stop": ["###"],
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "seed": 0,
        "logprobs": 4,
    }
    built = SamplingParams(**mapped[0])
    assert (built.seed, built.logprobs, built.max_tokens) == (calls[0].seed, 4, 2)
    assert sampling_kwargs(Dispatcher(teacher_with(), None).calls_for(
        chat("r", "Hi"))[0])["stop"] is None  # fmt: skip


def test_a_whole_chunk_goes_into_the_engine_before_the_first_step_and_comes_back_aligned():
    engine = StandInEngine()
    requests = [chat("a", "Name a colour.", n=2), chat("b", "Name a fruit.", n=2)]
    answers = resolve(teacher_with(engine), requests)
    assert list(engine.added_at.values()) == [0, 0, 0, 0]
    assert (
        prompt_texts(engine)
        == ["user: Name a colour.\nassistant:"] * 2 + ["user: Name a fruit.\nassistant:"] * 2
    )
    prompt_lengths = [len(ids) for ids in engine.prompts.values()]
    for request, request_answers, length in zip(
        requests, answers, prompt_lengths[::2], strict=True
    ):
        question = request.messages[0]["content"]
        expected = [f"user: {question}\nassistant: / seed {seed}" for seed in seeds_of(request)]
        assert [c.text for c in request_answers] == expected
        for completion in request_answers:
            assert completion.model == "org/model"
            assert (completion.prompt_tokens, completion.completion_tokens) == (length, 2)
            assert completion.finish_reason == "length"
            assert completion.logprobs is None


def test_each_sample_goes_in_as_its_own_seeded_final_only_sampling_params():
    engine = StandInEngine()
    request = chat("a", "Hi", n=3, temperature=0.5)
    resolve(teacher_with(engine), [request])
    seen = list(engine.params.values())
    assert [p.seed for p in seen] == seeds_of(request)
    assert {(p.n, p.temperature, p.output_kind) for p in seen} == {
        (1, 0.5, RequestOutputKind.FINAL_ONLY)
    }


def test_a_chat_is_rendered_as_llm_chat_renders_it_with_one_bos():
    engine = StandInEngine()
    resolve(teacher_with(engine), [chat("a", "Name a colour.")])
    [ids] = engine.prompts.values()
    tok = standin_tokenizer()
    text = tok.apply_chat_template(
        [{"role": "user", "content": "Name a colour."}], tokenize=False, add_generation_prompt=True
    )
    assert text.startswith("<s>")  # the template writes BOS ...
    assert ids == tok(text, add_special_tokens=False)["input_ids"]
    assert ids.count(tok.bos_token_id) == 1  # ... so encoding must not add a second one
    assert tok(text)["input_ids"].count(tok.bos_token_id) == 2  # as plain encoding would


def test_a_configured_chat_template_replaces_the_tokenizers_own():
    engine = StandInEngine()
    template = "{{ bos_token }}Q: {{ messages[-1]['content'] }} A:"
    resolve(teacher_with(engine, chat_template=template), [chat("a", "Hi")])
    [ids] = engine.prompts.values()
    assert standin_tokenizer().decode(ids) == "<s>Q: Hi A:"


def test_chat_and_raw_prompts_in_one_chunk_go_in_together():
    engine = StandInEngine()
    raw = Request(id="p", params=Params(max_tokens=2), prompt="Once upon a time")
    answers = resolve(teacher_with(engine), [chat("c", "Hi"), raw])
    tok = standin_tokenizer()
    chat_ids, raw_ids = engine.prompts.values()
    assert raw_ids == tok("Once upon a time")["input_ids"]  # text: the engine adds BOS
    assert raw_ids[0] == tok.bos_token_id and chat_ids[0] == tok.bos_token_id
    assert list(engine.added_at.values()) == [0, 0]
    assert answers[0][0].text == f"user: Hi\nassistant: / seed {seeds_of(chat('c', 'Hi'))[0]}"
    assert answers[1][0].text == f"Once upon a time / seed {seeds_of(raw)[0]}"


def test_each_completion_is_cached_when_its_request_finishes_so_an_oom_loses_only_the_rest(
    tmp_path: Path,
):
    """Requests finish at steps 1, 2, 5 and 6; the engine runs out of memory at step 3."""
    requests = [chat(f"r{k}", f"Question {k}?", max_tokens=k) for k in (1, 2, 5, 6)]
    cache = ResponseCache(tmp_path / "cache.sqlite")
    try:
        engine = StandInEngine(fail_at_step=3)
        with pytest.raises(FatalTeacherError) as error:
            resolve(teacher_with(engine), requests, cache)
        assert str(error.value) == (
            "the vLLM engine failed: OutOfMemoryError: CUDA out of memory. Tried to allocate "
            "2.00 GiB (finished samples are cached; rerun to resume)"
        )
        assert sorted(engine.finished_at.values()) == [1, 2]
        assert not engine.has_unfinished_requests()  # the rest were aborted
        dispatcher = Dispatcher(teacher_with(), None, SEED)
        keys = {r.id: dispatcher.calls_for(r)[0].key for r in requests}
        cached = cache.get_many(keys.values())
        assert [rid for rid, key in keys.items() if key in cached] == ["r1", "r2"]

        healthy = StandInEngine()
        again = resolve(teacher_with(healthy), requests, cache)  # resumes with the rest only
        assert prompt_texts(healthy) == [f"user: Question {k}?\nassistant:" for k in (5, 6)]
        assert [answer[0].completion_tokens for answer in again] == [1, 2, 5, 6]
    finally:
        cache.close()


def test_completions_are_yielded_step_by_step_not_when_the_chunk_is_done():
    engine = StandInEngine(step_seconds=0.005)
    teacher = teacher_with(engine)
    dispatcher = Dispatcher(teacher, None, SEED)
    calls = [dispatcher.calls_for(chat(f"r{k}", "Hi", max_tokens=k))[0] for k in (1, 3, 200)]
    engine_steps_when_yielded = {}

    async def run():
        try:
            async for call, _ in teacher.generate(calls):
                engine_steps_when_yielded[call.request.id] = engine.steps
        finally:
            await teacher.aclose()

    asyncio.run(run())
    assert list(engine_steps_when_yielded) == ["r1", "r3", "r200"]  # in the order they finish
    assert engine_steps_when_yielded["r1"] < 200 and engine_steps_when_yielded["r3"] < 200


def test_without_final_only_outputs_partial_ones_are_skipped_and_each_call_comes_once():
    """vLLM before RequestOutputKind hands every running request back at every step."""
    engine = StandInEngine()
    requests = [chat("a", "Hi", max_tokens=3), chat("b", "Yo", max_tokens=1)]
    answers = resolve(teacher_with(engine, final_only=False), requests)
    assert [[c.completion_tokens for c in a] for a in answers] == [[3], [1]]
    assert engine.steps == 3


def test_the_next_chunk_joins_the_engine_while_the_last_chunk_still_runs():
    engine = StandInEngine(step_seconds=0.002, max_num_seqs=8)
    teacher = teacher_with(engine)
    lengths = {"slow": 400, "quick": 1, "next": 1, "last": 1}  # chunks: slow+quick, next+last
    requests = [chat(rid, f"Say {rid}.", max_tokens=k) for rid, k in lengths.items()]

    async def run():
        dispatcher = Dispatcher(teacher, None, config_seed=SEED)
        try:
            batches = dispatcher.map_ordered(requests, lambda r: [r], batch_size=2)
            return [item async for item in batches]
        finally:
            await teacher.aclose()

    answered = asyncio.run(run())
    assert [request.id for request, _ in answered] == ["slow", "quick", "next", "last"]
    slow, _, *second_chunk = engine.added_at  # request ids in the order they were added
    assert all(engine.added_at[i] < engine.finished_at[slow] for i in second_chunk)
    assert all(engine.finished_at[i] < engine.finished_at[slow] for i in second_chunk)


def test_top_k_logprobs_are_kept_compactly_and_the_sampled_token_outside_the_top_k_is_not():
    [[completion]] = resolve(teacher_with(), [chat("c", "Hi", top_logprobs=2)])
    assert completion.logprobs == [
        ["Hi", -0.1, {"Hi": -0.1, "Yo": -2.0}],
        [" seed", -4.0, {" there": -0.5, " all": -1.5}],
    ]
    assert completion.to_response(0)["logprobs"] == completion.logprobs


def test_top_0_keeps_only_the_sampled_tokens_logprob():
    positions = [{5: Logprob(logprob=-0.7, rank=3, decoded_token=None)}]
    assert compact_vllm_logprobs(positions, [5], top_k=0) == [["<5>", -0.7, {}]]


def test_completions_go_through_the_response_cache(tmp_path: Path):
    engine = StandInEngine()
    cache = ResponseCache(tmp_path / "cache.sqlite")
    try:
        first = resolve(teacher_with(engine), [chat("a", "Hi", n=2)], cache)
        again = resolve(teacher_with(engine), [chat("a", "Hi", n=2)], cache)
    finally:
        cache.close()
    assert len(engine.prompts) == 2
    assert [c.text for c in again[0]] == [c.text for c in first[0]]


def test_an_engine_refusal_is_fatal_names_the_request_and_frees_the_engine():
    engine = StandInEngine(max_model_len=16)
    requests = [chat("short", "Hi", max_tokens=50), chat("long", "x " * 40)]
    with pytest.raises(FatalTeacherError) as error:
        resolve(teacher_with(engine), requests)
    assert str(error.value).startswith("request long: vLLM refused it: The decoder prompt (length ")
    assert "is longer than the maximum model length of 16" in str(error.value)
    assert len(engine.prompts) == 1 and not engine.has_unfinished_requests()


def test_engine_arguments_reach_vllm_llm():
    teacher = teacher_with(max_model_len=512, dtype="bfloat16")
    llm = teacher.load()
    assert llm.kwargs["max_model_len"] == 512 and llm.kwargs["dtype"] == "bfloat16"
    assert llm.kwargs["model"] == "org/model" and llm.kwargs["seed"] == 0


def test_the_engine_is_built_on_the_main_thread_and_stepped_on_its_own():
    """vLLM's V1 engine installs signal handlers when built: only the main thread may."""
    engine = StandInEngine()
    teacher = teacher_with(engine)
    built_on = []

    async def run():
        calls = Dispatcher(teacher, None, SEED).calls_for(chat("a", "Hi"))
        try:
            async for _ in teacher.generate(calls):
                built_on.append(teacher.load().built_on)
        finally:
            await teacher.aclose()

    asyncio.run(run())
    assert built_on == [threading.main_thread()]
    [stepper] = engine.stepped_on
    assert stepper is not threading.main_thread() and not stepper.is_alive()  # closed


def test_vllm_is_imported_only_when_the_engine_is_built(tmp_path: Path):
    """A vllm package that cannot import: the backend module and teacher still build."""
    fake = tmp_path / "vllm"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('vllm needs a GPU build')\n")
    script = (
        "import distillpipe.teachers.vllm as backend\n"
        "from distillpipe.errors import MissingDependencyError\n"
        "teacher = backend.VllmTeacher(backend.VllmOptions(model='m'))\n"
        "try:\n    teacher.load()\nexcept MissingDependencyError as exc:\n    print(exc)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "teacher.backend: vllm needs an optional dependency: pip install 'distillpipe[vllm]'"
    )
