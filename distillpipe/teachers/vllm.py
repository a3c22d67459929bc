"""In-process vLLM on the GPU: whole chunks of calls go to the engine at once.

Every chunk the dispatcher hands over (``generate.batch_size`` records × n
samples) becomes one ``LLM.chat`` (the model's own chat template) or
``LLM.generate`` call, so vLLM's continuous batching keeps the GPU full; give
it large chunks (configs/vllm.yaml uses 1024). Each sample is its own call
with its own seed (``n=1`` per SamplingParams), because the sample is the unit
the response cache stores and a resumed run must redraw exactly the samples it
lacks. vLLM is an optional extra imported on first use; choosing this backend
without it fails at config validation with the ``pip install`` line.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import AsyncIterator, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from pydantic import Field, model_validator

from distillpipe.errors import FatalTeacherError, MissingDependencyError
from distillpipe.teachers.base import Call, Completion, Teacher, TeacherOptions


def vllm_installed() -> bool:
    return importlib.util.find_spec("vllm") is not None


class VllmOptions(TeacherOptions):
    backend: Literal["vllm"] = "vllm"
    model: str = Field(description="a Hugging Face model id or a local model folder")
    mode: Literal["chat", "completion"] = "chat"
    tensor_parallel_size: int = Field(1, ge=1)
    gpu_memory_utilization: float = Field(0.9, gt=0.0, le=1.0)
    max_model_len: int | None = Field(None, ge=16)
    dtype: str = "auto"
    quantization: str | None = None
    enable_prefix_caching: bool = True
    trust_remote_code: bool = False
    chat_template: str | None = Field(None, description="default: the tokenizer's own")
    engine_args: dict[str, Any] = Field(
        default_factory=dict, description="any other vllm.LLM keyword argument"
    )

    @model_validator(mode="after")
    def _vllm_is_installed(self) -> VllmOptions:
        if not vllm_installed():
            raise MissingDependencyError("teacher.backend: vllm", "vllm")
        return self


def engine_kwargs(options: VllmOptions) -> dict[str, Any]:
    """Keyword arguments for ``vllm.LLM``."""
    kwargs: dict[str, Any] = {
        "model": options.model,
        "tensor_parallel_size": options.tensor_parallel_size,
        "gpu_memory_utilization": options.gpu_memory_utilization,
        "dtype": options.dtype,
        "enable_prefix_caching": options.enable_prefix_caching,
        "trust_remote_code": options.trust_remote_code,
        "seed": 0,  # every request carries its own seed; this only fixes the engine's
    }
    if options.max_model_len is not None:
        kwargs["max_model_len"] = options.max_model_len
    if options.quantization is not None:
        kwargs["quantization"] = options.quantization
    return {**kwargs, **options.engine_args}


def sampling_kwargs(call: Call) -> dict[str, Any]:
    """Keyword arguments for ``vllm.SamplingParams``: one sample, seeded from its cache key."""
    params = call.request.params
    return {
        "n": 1,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "max_tokens": params.max_tokens,
        "stop": list(params.stop) or None,
        "presence_penalty": params.presence_penalty,
        "frequency_penalty": params.frequency_penalty,
        "seed": call.seed,
        "logprobs": params.top_logprobs,
    }


def compact_vllm_logprobs(
    positions: Iterable[dict[int, Any] | None] | None, token_ids: Sequence[int], top_k: int
) -> list[Any] | None:
    """vLLM's per-position ``{token_id: Logprob}`` as ``[[token, logprob, {alt: lp}], ...]``,
    the same compact rows the OpenAI path stores. vLLM adds the sampled token to
    each position when it falls outside the top k; ``{alt: lp}`` keeps the top k only."""
    if positions is None:
        return None
    rows = []
    for token_id, position in zip(token_ids, positions, strict=False):
        position = position or {}
        chosen = position.get(token_id)
        top = {
            _token_text(alt_id, alt.decoded_token): alt.logprob
            for alt_id, alt in sorted(position.items(), key=lambda item: _rank(item[1]))
            if _rank(alt) <= top_k
        }
        if chosen is None:
            rows.append([str(token_id), None, top])
        else:
            rows.append([_token_text(token_id, chosen.decoded_token), chosen.logprob, top])
    return rows


def _rank(logprob: Any) -> float:
    return logprob.rank if logprob.rank is not None else float("inf")


def _token_text(token_id: int, decoded: str | None) -> str:
    return decoded if decoded is not None else f"<{token_id}>"


def completion_from(output: Any, model: str, top_k: int | None) -> Completion:
    """One ``vllm.RequestOutput`` (one sample) as a :class:`Completion`."""
    sample = output.outputs[0]
    logprobs = None
    if top_k is not None:
        logprobs = compact_vllm_logprobs(sample.logprobs, sample.token_ids, top_k)
    return Completion(
        text=sample.text,
        model=model,
        finish_reason=sample.finish_reason,
        prompt_tokens=len(output.prompt_token_ids or ()),
        completion_tokens=len(sample.token_ids),
        logprobs=logprobs,
    )


class VllmTeacher(Teacher):
    name = "vllm"
    Options = VllmOptions
    options: VllmOptions

    def __init__(self, options: VllmOptions) -> None:
        super().__init__(options)
        # One thread owns the engine: LLM is not thread-safe, and chunks queue up behind it.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vllm")
        self._llm: Any = None
        self._sampling_params_type: Any = None

    @classmethod
    def identify(cls, options: VllmOptions) -> dict[str, Any]:  # type: ignore[override]
        """The model id or folder, and its revision when one is pinned."""
        revision = options.engine_args.get("revision")
        return {**super().identify(options), **({"revision": revision} if revision else {})}

    def load(self) -> Any:
        """The ``vllm.LLM`` engine, built on first use."""
        if self._llm is None:
            try:
                from vllm import LLM, SamplingParams
            except ImportError as exc:
                raise MissingDependencyError("teacher.backend: vllm", "vllm") from exc
            self._sampling_params_type = SamplingParams
            self._llm = LLM(**engine_kwargs(self.options))
        return self._llm

    def complete_chunk(self, calls: Sequence[Call]) -> list[Completion]:
        """Every call of the chunk through one engine call per kind (chat, raw prompt)."""
        llm = self.load()
        chat = [i for i, call in enumerate(calls) if call.request.messages is not None]
        raw = [i for i, call in enumerate(calls) if call.request.messages is None]
        completions: list[Completion | None] = [None] * len(calls)
        for indexes, is_chat in ((chat, True), (raw, False)):
            if not indexes:
                continue
            chunk = [calls[i] for i in indexes]
            params = [self._sampling_params_type(**sampling_kwargs(call)) for call in chunk]
            try:
                if is_chat:
                    outputs = llm.chat(
                        [list(call.request.messages or ()) for call in chunk],
                        params,
                        use_tqdm=False,
                        chat_template=self.options.chat_template,
                    )
                else:
                    outputs = llm.generate(
                        [call.request.prompt for call in chunk], params, use_tqdm=False
                    )
            except ValueError as exc:  # a prompt longer than max_model_len, a bad parameter
                raise FatalTeacherError(
                    f"vLLM refused the chunk of {len(chunk)} calls this request starts: {exc}",
                    request_id=chunk[0].request.id,
                ) from exc
            for i, call, output in zip(indexes, chunk, outputs, strict=True):
                top_k = call.request.params.top_logprobs
                completions[i] = completion_from(output, self.model, top_k)
        return [completion for completion in completions if completion is not None]

    async def generate(self, calls: Sequence[Call]) -> AsyncIterator[tuple[Call, Completion]]:
        loop = asyncio.get_running_loop()
        completions = await loop.run_in_executor(self._executor, self.complete_chunk, calls)
        for call, completion in zip(calls, completions, strict=True):
            yield call, completion

    async def aclose(self) -> None:
        self._executor.shutdown(wait=True)
        self._llm = None
