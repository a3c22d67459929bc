"""The one protocol every teacher backend speaks.

A stage builds :class:`Request` objects (chat messages or a raw completion
prompt, sampling parameters, ``n``). The dispatcher splits each into one
:class:`Call` per sample — the unit of caching — and hands the calls the cache
cannot answer to :meth:`Teacher.generate`, which yields completions as they
finish. API backends run calls concurrently; in-process backends batch them
internally.

Backends register under the entry-point group ``distillpipe.teachers``; the
built-ins use the same registry as third-party packages.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from distillpipe import registry
from distillpipe.registry import load_plugin
from distillpipe.structured import ResponseFormat
from distillpipe.teachers.reasoning import TRACE_ENCODING, ReasoningOptions, split_inline
from distillpipe.tokens import count_tokens, encoding_named

Message = dict[str, str]
CONTENT_FILTER = "content_filter"  # the finish_reason of a refusal, which is an answer


@dataclass(frozen=True, slots=True)
class SamplingParams:
    temperature: float = 0.7
    top_p: float = 1.0
    max_tokens: int = 256
    stop: tuple[str, ...] = ()
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    top_logprobs: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "stop": list(self.stop),
            "presence_penalty": self.presence_penalty,
            "frequency_penalty": self.frequency_penalty,
            "top_logprobs": self.top_logprobs,
        }


@dataclass(frozen=True, slots=True)
class Request:
    """What a stage asks of the teacher. ``id`` names it in errors and logs."""

    id: str
    params: SamplingParams
    messages: tuple[Message, ...] | None = None
    prompt: str | None = None
    n: int = 1
    first_sample: int = 0  # samples first_sample .. first_sample+n-1 (rejection sampling rounds)
    response_format: ResponseFormat | None = None
    """JSON (any object) or a JSON Schema the answer must follow (``structured.py``)."""
    teacher: str | None = None
    """The panel member asked (``teachers:``): in the cache key; None for a plain ``teacher:``."""

    def __post_init__(self) -> None:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("a Request carries either messages or a prompt")

    def payload(self) -> dict[str, Any]:
        """What the request asks, as its cache key holds it: a request without a response
        format keeps the key it had before formats existed."""
        asked: dict[str, Any] = (
            {"messages": list(self.messages)}
            if self.messages is not None
            else {"prompt": self.prompt}
        )
        if self.response_format is not None:
            asked["response_format"] = self.response_format.key()
        return asked


@dataclass(frozen=True, slots=True)
class Call:
    """One sample of one request: what the cache stores and a backend answers."""

    request: Request
    sample: int
    key: str
    seed: int


@dataclass(slots=True)
class Completion:
    text: str
    """The answer only: an inline trace is split out when the completion is read."""
    model: str
    finish_reason: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    """Every token generated and billed as output, the hidden reasoning included."""
    logprobs: list[Any] | None = field(default=None)
    reasoning_tokens: int = 0
    """Of ``completion_tokens``, those spent reasoning, where the API reports them."""
    reasoning: str | None = None
    """The trace (``teachers/reasoning.py``); None when the teacher gave none."""
    reasoning_kind: str = "none"
    """raw, summary (a provider's summary of its thinking), redacted or none."""
    reasoning_blocks: list[dict[str, Any]] | None = None
    """Anthropic's thinking blocks as sent (their signatures): a later turn replays them."""
    reasoning_tokens_counted: bool = False
    """``reasoning_tokens`` counted here (``reasoning.TRACE_ENCODING``), not reported."""
    created: str | None = None
    """When the teacher answered (UTC, ISO 8601), kept in the cache so a replay says the
    same; None for answers cached before it was recorded."""
    ladder: tuple[int, ...] = ()
    """The ``max_tokens`` of every attempt of this sample, this one last (the truncation
    ladder, ``generate.max_tokens: [...]``); not cached: each attempt is its own entry."""

    def to_cache(self) -> dict[str, Any]:
        usage: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }
        if self.reasoning_tokens:
            usage["reasoning_tokens"] = self.reasoning_tokens
        if self.reasoning_tokens_counted:
            usage["reasoning_tokens_counted"] = True
        value: dict[str, Any] = {
            "text": self.text,
            "model": self.model,
            "finish_reason": self.finish_reason,
            "usage": usage,
        }
        if self.logprobs is not None:
            value["logprobs"] = self.logprobs
        if self.reasoning is not None or self.reasoning_kind != "none":
            value["reasoning"] = self.reasoning
            value["reasoning_kind"] = self.reasoning_kind
        if self.reasoning_blocks is not None:
            value["reasoning_blocks"] = self.reasoning_blocks
        if self.created is not None:
            value["created"] = self.created
        return value

    @classmethod
    def from_cache(cls, value: dict[str, Any]) -> Completion:
        """A cache value back; values written before traces were kept read as none."""
        usage = value.get("usage") or {}
        return cls(
            text=value["text"],
            model=value["model"],
            finish_reason=value.get("finish_reason"),
            prompt_tokens=usage.get("prompt_tokens", 0),
            completion_tokens=usage.get("completion_tokens", 0),
            logprobs=value.get("logprobs"),
            reasoning_tokens=usage.get("reasoning_tokens", 0),
            reasoning=value.get("reasoning"),
            reasoning_kind=value.get("reasoning_kind") or "none",
            reasoning_blocks=value.get("reasoning_blocks"),
            reasoning_tokens_counted=bool(usage.get("reasoning_tokens_counted")),
            created=value.get("created"),
        )

    def read(self, options: ReasoningOptions) -> Completion:
        """The completion as records carry it: an inline trace split out of ``text`` (a
        structured one already has its field) and the trace's tokens counted where the
        provider reported none."""
        completion = self
        if options.inline and options.tags:
            parsed = split_inline(self.text, options.tags)
            if parsed.reasoning is not None or parsed.answer != self.text:
                traces = [t for t in (self.reasoning, parsed.reasoning) if t]
                completion = replace(
                    self,
                    text=parsed.answer,
                    reasoning="\n\n".join(traces) or None,
                    reasoning_kind=self.reasoning_kind if self.reasoning else parsed.kind,
                )
        if completion.reasoning and not completion.reasoning_tokens:
            counted = count_tokens(encoding_named(TRACE_ENCODING), completion.reasoning)
            completion = replace(
                completion, reasoning_tokens=counted, reasoning_tokens_counted=True
            )
        return completion

    def to_response(self, sample: int) -> dict[str, Any]:
        """The record's ``responses[]`` entry: the answer in ``text``, the trace beside it."""
        response = self.to_cache()
        response.pop("created", None)  # provenance carries it
        response["reasoning"] = self.reasoning
        response["reasoning_kind"] = self.reasoning_kind
        response["sample"] = sample
        return response


class TeacherOptions(BaseModel):
    """Options common to every backend; each backend subclasses this as ``Options``."""

    model_config = ConfigDict(extra="forbid")

    backend: str
    model: str
    mode: Literal["chat", "completion"] = Field(
        "chat", description="chat: the model's chat template; completion: a raw prompt"
    )
    reasoning: ReasoningOptions = Field(
        default_factory=ReasoningOptions,
        description="how a reasoning trace written inline is told from the answer",
    )

    def request_params(self, params: SamplingParams) -> dict[str, Any]:
        """The sampling parameters a request carries to this backend's model: the
        stage's, less what the model is never sent, plus the backend's own options
        that change the answer. The cache key hashes this."""
        return params.as_dict()

    def format_params(self) -> dict[str, Any]:
        """The backend's options that change how a response format is enforced (and so
        the answer): in the cache key of requests that carry a format, and only theirs."""
        return {}

    def chat_template_source(self) -> str | None:
        """Where the model keeps its own chat template (a GGUF file, a Hugging Face
        tokenizer), for Magpie's pre-query; None when the backend cannot tell."""
        return None

    def option_problem(self) -> tuple[str, str] | None:
        """An option the model cannot take: (its key under ``teacher``, why)."""
        return None

    def sampling_problem(self, params: SamplingParams) -> tuple[str, str] | None:
        """A sampling parameter the model would reject: (its name, why). Checked for
        every config section that asks the teacher, so it fails before any call."""
        return None

    def schema_problem(self, response_format: ResponseFormat) -> tuple[str, str] | None:
        """Why this backend cannot hold answers to ``response_format``: (the key under
        ``teacher`` to change, why), naming the backend; None when it can. A backend
        that says nothing cannot."""
        return "backend", f"the {self.backend} backend cannot constrain answers to a JSON schema"


class Budget(Protocol):
    """The ``--max-cost`` guard (``cost.BudgetGuard``) as a paid call sees it."""

    def reserve(self, call: Call, payload_bytes: int = 0) -> float:
        """The call's worst case, held back; raises BudgetExceededError when it does not fit."""
        ...

    def settle(self, reserved: float, completion: Completion | None) -> None:
        """Release a reservation; a completion (None: the call failed) is what it cost."""
        ...


def report_nothing(text: str) -> None:
    """The default status reporter of a teacher built outside a stage (tests, tools)."""


@dataclass(frozen=True, slots=True)
class TeacherContext:
    """What a teacher is handed when it is built; nothing is set on it afterwards.

    The default is what a bare teacher (a test, a tool) needs: no budget, no
    state kept across runs, silent status lines, logs in the current folder.
    """

    budget: Budget | None = None
    """Every paid call reserves its worst case here first and settles after."""
    state_dir: Path | None = None
    """Where a backend keeps state across reruns (the batch journal)."""
    report: Callable[[str], None] = report_nothing
    """One status line for the user (the progress stream)."""
    log_dir: Path | None = None
    """Where a backend writes its own logs (a managed server's): the run directory."""


class Teacher(ABC):
    """A backend. Subclasses set ``name`` and ``Options`` and implement ``generate``."""

    name: ClassVar[str]
    Options: ClassVar[type[TeacherOptions]]
    needs_key: ClassVar[bool] = False
    key_env_var: ClassVar[str | None] = None

    def __init__(self, options: TeacherOptions, context: TeacherContext | None = None) -> None:
        self.options = options
        self.context = context or TeacherContext()

    @property
    def model(self) -> str:
        """The model's name as records carry it."""
        return self.options.model

    @classmethod
    def identify(cls, options: TeacherOptions) -> dict[str, Any]:
        """Which model answers, as JSON data: it enters every cache key and the hash of
        every stage that reads the teacher, so the cache never answers for another model.

        Worked out from the options alone: no API key, no model loaded, no server
        started. The default is the backend and the model's name; a backend whose name
        can be a mere label (a local file, a local server) adds what tells models apart.
        """
        return {"backend": cls.name, "model": options.model}

    @cached_property
    def identity(self) -> dict[str, Any]:
        """:meth:`identify` for this teacher's options, worked out once."""
        return self.identify(self.options)

    @property
    def mode(self) -> str:
        return self.options.mode

    @property
    def concurrency(self) -> int:
        """How many calls the backend wants in flight at once."""
        return 1

    @abstractmethod
    def generate(self, calls: Sequence[Call]) -> AsyncIterator[tuple[Call, Completion]]:
        """Yield ``(call, completion)`` for every call, in the order they finish."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections, engines, threads."""


def teacher_class(backend: str) -> type[Teacher]:
    """Look a backend up by name in the entry-point registry (importing it lazily)."""
    unknown = f"teacher.backend: unknown backend {backend!r}"
    return load_plugin(registry.TEACHERS, backend, unknown)


def teacher_identity(options: TeacherOptions) -> dict[str, Any]:
    """The identity of the teacher these options build, without building it."""
    return teacher_class(options.backend).identify(options)


def compact_logprobs(logprobs: Any, top_k: int | None = None) -> list[Any] | None:
    """OpenAI-shaped logprobs (chat or completions) as ``[[token, logprob, {alt: lp}], ...]``.

    With ``top_k``, each ``{alt: lp}`` keeps the k most likely alternatives: some
    servers (llama.cpp's) add the sampled token when it falls outside the top k.
    """
    if not logprobs:
        return None
    if "content" in logprobs:
        rows = []
        for token in logprobs["content"] or []:
            top = {alt["token"]: float(alt["logprob"]) for alt in token.get("top_logprobs") or []}
            rows.append([token["token"], float(token["logprob"]), _most_likely(top, top_k)])
        return rows
    tops = logprobs.get("top_logprobs") or [None] * len(logprobs["tokens"])
    # llama.cpp hands numpy float32s, which JSON (and the cache) cannot hold
    return [
        [
            token,
            float(logprob),
            _most_likely({alt: float(v) for alt, v in (top or {}).items()}, top_k),
        ]
        for token, logprob, top in zip(
            logprobs["tokens"], logprobs["token_logprobs"], tops, strict=False
        )
    ]


def _most_likely(top: dict[str, float], k: int | None) -> dict[str, float]:
    if k is None or len(top) <= k:
        return top
    return dict(sorted(top.items(), key=lambda item: item[1], reverse=True)[:k])
