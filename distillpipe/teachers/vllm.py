"""In-process vLLM on the GPU: whole chunks of calls in the engine at once, each
completion handed back the moment its request finishes.

Every chunk the dispatcher hands over (``generate.batch_size`` records × n
samples) is added to the engine at once, so vLLM's continuous batching keeps
the GPU full; give it large chunks (configs/vllm.yaml uses 1024). The engine
is stepped directly (``LLMEngine.add_request`` / ``step``, see
vllm_engine.py) rather than through ``LLM.chat`` / ``LLM.generate``, which
return only when the whole list is done: each finished sample goes to the
cache at once, so a kill or an out-of-memory loses only what was in flight.
Chat prompts go through the model's chat template exactly as ``LLM.chat``
renders them. Each sample is its own request with its own seed (``n=1`` per
SamplingParams), because the sample is the unit the response cache stores and
a resumed run must redraw exactly the samples it lacks. vLLM is an optional
extra imported on first use; choosing this backend without it fails at config
validation with the ``pip install`` line. A reasoning model's trace comes back
inline in the text (``<think>…</think>``); it is split from the answer when
the completion is read, by the same parser as every backend's
(``reasoning.split_inline``, tags under ``teacher.reasoning``).

A response format (``structured.py``) becomes vLLM's structured outputs:
``SamplingParams(structured_outputs=StructuredOutputsParams(json=schema))``
(``json``: ``json_object=True``), or ``guided_decoding=GuidedDecodingParams(...)``
on vLLM before 0.10.2. The engine constrains the whole text: a model that
writes its trace inline needs vLLM's ``reasoning_parser`` engine argument
(``teacher.engine_args``), which holds the schema back until the trace ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, model_validator

from distillpipe.errors import MissingDependencyError
from distillpipe.structured import ResponseFormat
from distillpipe.teachers.base import (
    Call,
    Completion,
    Message,
    Teacher,
    TeacherContext,
    TeacherOptions,
)
from distillpipe.teachers.vllm_engine import Delivery, EngineLoop


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

    def chat_template_source(self) -> str | None:
        return self.model  # its Hugging Face tokenizer

    def schema_problem(self, response_format: ResponseFormat) -> tuple[str, str] | None:
        return None  # structured outputs, in every vLLM this backend runs on

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
    """Keyword arguments for ``vllm.SamplingParams``: one sample, seeded from its cache key
    (a response format apart: :func:`structured_kwargs`)."""
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


def structured_kwargs(call: Call, api: VllmApi) -> dict[str, Any]:
    """The ``SamplingParams`` keyword that constrains the sample to its response format."""
    response_format = call.request.response_format
    if response_format is None:
        return {}
    if api.StructuredParams is None:
        raise MissingDependencyError("teacher.backend: vllm with structured outputs", "vllm")
    if response_format.kind == "json":
        constraint = api.StructuredParams(json_object=True)
    else:
        constraint = api.StructuredParams(json=response_format.schema)
    return {api.structured_key: constraint}


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


@dataclass(frozen=True)
class VllmApi:
    """The parts of vLLM this backend uses, imported on first use (tests pass stand-ins)."""

    LLM: Callable[..., Any]
    SamplingParams: Callable[..., Any]
    final_only: Any = None
    """``RequestOutputKind.FINAL_ONLY`` (vLLM >= 0.6.1): no partial outputs per step."""
    StructuredParams: Callable[..., Any] | None = None
    """``StructuredOutputsParams`` (vLLM >= 0.10.2), else ``GuidedDecodingParams``."""
    structured_key: str = "structured_outputs"
    """The ``SamplingParams`` keyword that takes it (``guided_decoding`` before 0.10.2)."""


def import_vllm() -> VllmApi:
    try:
        from vllm import LLM, SamplingParams
    except ImportError as exc:
        raise MissingDependencyError("teacher.backend: vllm", "vllm") from exc
    structured: dict[str, Any] = {}
    try:
        from vllm.sampling_params import StructuredOutputsParams

        structured = {"StructuredParams": StructuredOutputsParams}
    except ImportError:
        with contextlib.suppress(ImportError):  # vLLM before 0.10.2
            from vllm.sampling_params import GuidedDecodingParams

            structured = {
                "StructuredParams": GuidedDecodingParams,
                "structured_key": "guided_decoding",
            }
    try:
        from vllm.sampling_params import RequestOutputKind
    except ImportError:  # older vLLM: partial outputs come too, and the loop skips them
        return VllmApi(LLM, SamplingParams, **structured)
    return VllmApi(LLM, SamplingParams, RequestOutputKind.FINAL_ONLY, **structured)


def chat_prompt(tokenizer: Any, messages: Sequence[Message], chat_template: str | None) -> Any:
    """A conversation as a vLLM ``TokensPrompt``, rendered the way ``LLM.chat`` renders
    it: the template writes the special tokens (BOS), so encoding adds none."""
    rendered = tokenizer.apply_chat_template(
        list(messages), tokenize=False, add_generation_prompt=True, chat_template=chat_template
    )
    if not isinstance(rendered, str):  # vLLM's Mistral tokenizer renders token ids directly
        return {"prompt_token_ids": list(rendered)}
    return {"prompt_token_ids": tokenizer.encode(rendered, add_special_tokens=False)}


class VllmTeacher(Teacher):
    name = "vllm"
    Options = VllmOptions
    options: VllmOptions

    def __init__(
        self,
        options: VllmOptions,
        context: TeacherContext | None = None,
        *,
        api: Callable[[], VllmApi] = import_vllm,
    ) -> None:
        super().__init__(options, context)
        self._import_api = api
        self._api: VllmApi | None = None
        self._llm: Any = None
        self._tokenizer: Any = None
        self._engine_loop: EngineLoop | None = None

    @classmethod
    def identify(cls, options: VllmOptions) -> dict[str, Any]:  # type: ignore[override]
        """The model id or folder, and its revision when one is pinned."""
        revision = options.engine_args.get("revision")
        return {**super().identify(options), **({"revision": revision} if revision else {})}

    def load(self) -> Any:
        """The ``vllm.LLM``, built on first use, on the calling thread (see vllm_engine.py)."""
        if self._llm is None:
            self._api = self._import_api()
            self._llm = self._api.LLM(**engine_kwargs(self.options))
            self._tokenizer = self._llm.get_tokenizer()
        return self._llm

    def engine_request(self, call: Call) -> tuple[Any, Any]:
        """``(prompt, SamplingParams)`` for ``LLMEngine.add_request``: a chat as token ids
        through the chat template (as ``LLM.chat``), a raw prompt as its text (as
        ``LLM.generate``, the engine adds BOS)."""
        assert self._api is not None
        extra = {} if self._api.final_only is None else {"output_kind": self._api.final_only}
        extra |= structured_kwargs(call, self._api)
        params = self._api.SamplingParams(**sampling_kwargs(call), **extra)
        messages = call.request.messages
        if messages is None:
            return call.request.prompt, params
        return chat_prompt(self._tokenizer, messages, self.options.chat_template), params

    def _loop(self) -> EngineLoop:
        if self._engine_loop is None:  # loads the model here, blocking: nothing runs before it
            self._engine_loop = EngineLoop(self.load().llm_engine, self.engine_request)
        return self._engine_loop

    async def generate(self, calls: Sequence[Call]) -> AsyncIterator[tuple[Call, Completion]]:
        """Each call as its request finishes in the engine, not when the chunk does."""
        if not calls:
            return
        loop = asyncio.get_running_loop()
        arrived: asyncio.Queue[Delivery] = asyncio.Queue()

        def deliver(item: Delivery) -> None:  # from the engine's thread
            with contextlib.suppress(RuntimeError):  # the event loop closed: nobody waits
                loop.call_soon_threadsafe(arrived.put_nowait, item)

        engine_loop = self._loop()
        chunk = engine_loop.submit(calls, deliver)
        left = len(calls)
        try:
            while left:
                item = await arrived.get()
                if isinstance(item, BaseException):
                    raise item
                for call, output in item:
                    left -= 1
                    top_k = call.request.params.top_logprobs
                    yield call, completion_from(output, self.model, top_k)
        finally:
            if left:  # failed, cancelled or abandoned: free the engine of the rest
                engine_loop.cancel(chunk)

    async def aclose(self) -> None:
        if self._engine_loop is not None:
            await asyncio.to_thread(self._engine_loop.close)
            self._engine_loop = None
        self._llm = self._tokenizer = None
