"""The vllm backend's mapping, without a GPU: requests → prompts and SamplingParams,
engine outputs → completions and compact top-k logprobs.

The engine is replaced by one that records what it is asked and answers with
vLLM's output types (see vllm_types.py: vLLM's own classes where importable,
else a recorded copy of them). Loading a real ``vllm.LLM`` needs a GPU; that
path runs in bench/gpu_vllm.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from vllm_types import CompletionOutput, Logprob, RequestOutput, SamplingParams

import distillpipe.teachers.vllm as vllm_backend
from distillpipe.cache import ResponseCache
from distillpipe.config import load_config
from distillpipe.dispatch import Dispatcher
from distillpipe.errors import ConfigError, FatalTeacherError, MissingDependencyError
from distillpipe.teachers.base import Request
from distillpipe.teachers.base import SamplingParams as Params
from distillpipe.teachers.vllm import (
    VllmOptions,
    VllmTeacher,
    compact_vllm_logprobs,
    engine_kwargs,
    sampling_kwargs,
)

CONFIGS = Path(__file__).parents[2] / "configs"


@pytest.fixture
def vllm_present(monkeypatch: pytest.MonkeyPatch) -> None:
    """Validation as on a machine with the extra installed."""
    monkeypatch.setattr(vllm_backend, "vllm_installed", lambda: True)


class RecordingEngine:
    """Stands where ``vllm.LLM`` stands: records each call, answers in vLLM's types.

    Each sample's text names its seed, and each position carries the sampled
    token plus the top 3 alternatives ranked as vLLM ranks them.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, list, list]] = []

    def chat(self, messages, sampling_params, *, use_tqdm=True, chat_template=None):
        assert use_tqdm is False
        self.calls.append(("chat", messages, sampling_params))
        pairs = zip(messages, sampling_params, strict=True)
        return [self._answer(conversation[-1]["content"], p) for conversation, p in pairs]

    def generate(self, prompts, sampling_params, *, use_tqdm=True):
        assert use_tqdm is False
        self.calls.append(("generate", prompts, sampling_params))
        return [self._answer(prompt, p) for prompt, p in zip(prompts, sampling_params, strict=True)]

    def _answer(self, prompt: str, params: SamplingParams) -> RequestOutput:
        token_ids = [101, 102]
        logprobs = None
        if params.logprobs is not None:
            logprobs = [
                {
                    101: Logprob(logprob=-0.1, rank=1, decoded_token="Hi"),
                    7: Logprob(logprob=-2.0, rank=2, decoded_token="Yo"),
                    8: Logprob(logprob=-3.0, rank=3, decoded_token="Hey"),
                },
                {
                    9: Logprob(logprob=-0.5, rank=1, decoded_token=" there"),
                    10: Logprob(logprob=-1.5, rank=2, decoded_token=" all"),
                    11: Logprob(logprob=-2.5, rank=3, decoded_token=" you"),
                    102: Logprob(logprob=-4.0, rank=9, decoded_token=" seed"),
                },
            ]
        sample = CompletionOutput(
            index=0,
            text=f"{prompt} / seed {params.seed}",
            token_ids=token_ids,
            cumulative_logprob=None,
            logprobs=logprobs,
            finish_reason="length",
            stop_reason=None,
        )
        return RequestOutput(
            request_id=str(len(self.calls)),
            prompt=prompt,
            prompt_token_ids=[1, 2, 3, 4],
            prompt_logprobs=None,
            outputs=[sample],
            finished=True,
        )


def teacher_with(engine: RecordingEngine, **options) -> VllmTeacher:
    teacher = VllmTeacher(VllmOptions.model_construct(model="org/model", **options))
    teacher._llm, teacher._sampling_params_type = engine, SamplingParams
    return teacher


def resolve(teacher: VllmTeacher, requests: list[Request], cache: ResponseCache | None = None):
    async def run():
        try:
            return await Dispatcher(teacher, cache, config_seed=11).resolve(requests)
        finally:
            await teacher.aclose()

    return asyncio.run(run())


def chat(id: str, text: str, n: int = 1, **params) -> Request:
    return Request(
        id=id,
        params=Params(max_tokens=2, **params),
        messages=({"role": "user", "content": text},),
        n=n,
    )


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
    calls = Dispatcher(teacher_with(RecordingEngine()), None, config_seed=11).calls_for(request)
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
    assert sampling_kwargs(Dispatcher(teacher_with(RecordingEngine()), None).calls_for(
        chat("r", "Hi"))[0])["stop"] is None  # fmt: skip


def test_a_whole_chunk_goes_to_the_engine_in_one_chat_call_and_comes_back_aligned():
    engine = RecordingEngine()
    requests = [chat("a", "Name a colour.", n=2), chat("b", "Name a fruit.", n=2)]
    answers = resolve(teacher_with(engine), requests)
    [(kind, conversations, params)] = engine.calls
    assert kind == "chat" and len(conversations) == 4
    assert conversations[0] == [{"role": "user", "content": "Name a colour."}]
    seeds = [p.seed for p in params]
    for request_answers, question, request_seeds in zip(
        answers, ["Name a colour.", "Name a fruit."], [seeds[:2], seeds[2:]], strict=True
    ):
        expected = [f"{question} / seed {seed}" for seed in request_seeds]
        assert [c.text for c in request_answers] == expected
        for completion in request_answers:
            assert completion.model == "org/model"
            assert (completion.prompt_tokens, completion.completion_tokens) == (4, 2)
            assert completion.finish_reason == "length"
            assert completion.logprobs is None


def test_chat_and_raw_prompts_in_one_chunk_go_through_chat_and_generate():
    engine = RecordingEngine()
    raw = Request(id="p", params=Params(max_tokens=2), prompt="Once upon a time")
    answers = resolve(teacher_with(engine), [chat("c", "Hi"), raw])
    assert [kind for kind, _, _ in engine.calls] == ["chat", "generate"]
    assert engine.calls[1][1] == ["Once upon a time"]
    assert answers[0][0].text.startswith("Hi / seed ")
    assert answers[1][0].text.startswith("Once upon a time / seed ")


def test_top_k_logprobs_are_kept_compactly_and_the_sampled_token_outside_the_top_k_is_not():
    [[completion]] = resolve(teacher_with(RecordingEngine()), [chat("c", "Hi", top_logprobs=2)])
    assert completion.logprobs == [
        ["Hi", -0.1, {"Hi": -0.1, "Yo": -2.0}],
        [" seed", -4.0, {" there": -0.5, " all": -1.5}],
    ]
    assert completion.to_response(0)["logprobs"] == completion.logprobs


def test_top_0_keeps_only_the_sampled_tokens_logprob():
    positions = [{5: Logprob(logprob=-0.7, rank=3, decoded_token=None)}]
    assert compact_vllm_logprobs(positions, [5], top_k=0) == [["<5>", -0.7, {}]]


def test_completions_go_through_the_response_cache(tmp_path: Path):
    engine = RecordingEngine()
    cache = ResponseCache(tmp_path / "cache.sqlite")
    try:
        first = resolve(teacher_with(engine), [chat("a", "Hi", n=2)], cache)
        again = resolve(teacher_with(engine), [chat("a", "Hi", n=2)], cache)
    finally:
        cache.close()
    assert len(engine.calls) == 1
    assert [c.text for c in again[0]] == [c.text for c in first[0]]


def test_an_engine_refusal_is_fatal_and_names_the_request():
    class Refusing(RecordingEngine):
        def chat(self, messages, sampling_params, **kwargs):
            raise ValueError("The decoder prompt (length 9000) is longer than the maximum")

    with pytest.raises(FatalTeacherError, match=r"request long: vLLM refused .*\(length 9000\)"):
        resolve(teacher_with(Refusing()), [chat("long", "x" * 100)])
