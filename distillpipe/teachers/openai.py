"""Any OpenAI-compatible endpoint: OpenAI, a vLLM or llama.cpp server, Ollama, SGLang.

Chat completions (``mode: chat``), raw completions (``mode: completion``) or
the OpenAI Batch API (``mode: batch``, chat requests at half price). The hot
path, limits and retries are shared with every API teacher (``api.py``).

Reasoning models (the o-series, gpt-5) follow their row of ``model_rules.yaml``:
``max_completion_tokens`` for ``max_tokens``, no sampling knobs they reject,
``teacher.reasoning_effort`` where they take it. Their hidden reasoning is
billed inside ``completion_tokens``; ``usage.completion_tokens_details
.reasoning_tokens`` says how much of it, and is kept as ``reasoning_tokens``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, ClassVar, Literal

from pydantic import Field

from distillpipe.errors import MissingApiKeyError
from distillpipe.teachers.api import ApiOptions, ApiTeacher, is_local
from distillpipe.teachers.base import (
    Call,
    Completion,
    SamplingParams,
    TeacherContext,
    compact_logprobs,
)
from distillpipe.teachers.server import LaunchOptions, ManagedServer

__all__ = ["OpenAIOptions", "OpenAITeacher", "is_local"]

_CONTENT_FILTER_CODES = {"content_filter", "content_policy_violation"}


class OpenAIOptions(ApiOptions):
    backend: Literal["openai"] = "openai"
    model: str
    base_url: str = "https://api.openai.com/v1"
    api_key_env: str = "OPENAI_API_KEY"
    mode: Literal["chat", "completion", "batch"] = Field(
        "chat", description="chat, completion (raw prompt) or batch (the Batch API, chat)"
    )
    launch: LaunchOptions | None = Field(
        None, description="start a local server (vllm serve, llama.cpp, ...) unless one answers"
    )
    reasoning_effort: str | None = Field(
        None, description="reasoning models: low, medium, high (gpt-5: minimal too)"
    )

    def request_params(self, params: SamplingParams) -> dict[str, Any]:
        sent = self.rule.sent(params)
        if self.reasoning_effort is not None:
            sent["reasoning_effort"] = self.reasoning_effort
        return sent

    def option_problem(self) -> tuple[str, str] | None:
        rule, effort = self.rule, self.reasoning_effort
        if rule.chat_only and self.mode == "completion":
            return "mode", f"{self.model} answers chat requests only: use mode chat or batch"
        if effort is not None and not rule.reasoning_effort:
            return "reasoning_effort", f"{self.model} takes no reasoning_effort"
        if effort is not None and effort not in rule.reasoning_effort:
            accepted = ", ".join(rule.reasoning_effort)
            return "reasoning_effort", f"{effort!r} is not one {self.model} takes ({accepted})"
        return None

    def sampling_problem(self, params: SamplingParams) -> tuple[str, str] | None:
        return self.rule.refusal(self.request_params(params), self.model)


class OpenAITeacher(ApiTeacher):
    name = "openai"
    Options = OpenAIOptions
    needs_key = True
    key_env_var = "OPENAI_API_KEY"
    batch_endpoint: ClassVar[str] = "/v1/chat/completions"
    options: OpenAIOptions

    def __init__(self, options: OpenAIOptions, context: TeacherContext | None = None) -> None:
        self._server: ManagedServer | None = None
        self._base_url = options.base_url
        super().__init__(options, context)

    def _find_key(self) -> str | None:
        try:
            return super()._find_key()
        except MissingApiKeyError:
            if self.options.launch is None:
                raise
            return None  # a server we start ourselves needs no key unless one is given

    @property
    def url(self) -> str:
        base = self._base_url.rstrip("/")
        endpoint = "completions" if self.options.mode == "completion" else "chat/completions"
        return f"{base}/{endpoint}"

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", **self.options.headers}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def body(self, call: Call) -> dict[str, Any]:
        request = call.request
        self.refuse_unsendable(call)
        sent = self.options.request_params(request.params)
        body: dict[str, Any] = {
            "model": self.options.model,
            self.options.rule.max_tokens_key: sent["max_tokens"],
        }
        for knob in ("temperature", "top_p"):
            if knob in sent:
                body[knob] = sent[knob]
        body["seed"] = call.seed
        for optional in ("stop", "presence_penalty", "frequency_penalty", "reasoning_effort"):
            if sent.get(optional):
                body[optional] = sent[optional]
        top_logprobs = sent.get("top_logprobs")
        if request.messages is not None:
            body["messages"] = list(request.messages)
            if top_logprobs is not None:
                body.update(logprobs=True, top_logprobs=top_logprobs)
        else:
            body["prompt"] = request.prompt
            if top_logprobs is not None:
                body["logprobs"] = top_logprobs
        return body

    def parse(self, data: Any, top_k: int | None = None) -> Completion:
        choice = data["choices"][0]
        text = choice["message"].get("content") if "message" in choice else choice.get("text")
        usage = data.get("usage") or {}
        details = usage.get("completion_tokens_details") or {}
        return Completion(
            text=text or "",
            model=data.get("model") or self.options.model,
            finish_reason=choice.get("finish_reason"),
            prompt_tokens=usage.get("prompt_tokens") or 0,
            completion_tokens=usage.get("completion_tokens") or 0,
            logprobs=compact_logprobs(choice.get("logprobs"), top_k),
            reasoning_tokens=details.get("reasoning_tokens") or 0,
        )

    def is_content_filter(self, status: int, data: Any) -> bool:
        error = data.get("error") if isinstance(data, dict) else None
        return isinstance(error, dict) and error.get("code") in _CONTENT_FILTER_CODES

    async def generate(self, calls: Sequence[Call]) -> AsyncIterator[tuple[Call, Completion]]:
        if self.options.launch is None:
            async for item in super().generate(calls):
                yield item
            return
        server = self.managed_server()
        self._base_url = await server.start()
        async for item in server.watch(super().generate(calls)):
            yield item

    def managed_server(self) -> ManagedServer:
        """The server ``launch`` asks for; started on first use (not for cached runs)."""
        assert self.options.launch is not None
        if self._server is None:
            given = "base_url" in self.options.model_fields_set
            self._server = ManagedServer(
                self.options.launch,
                model=self.options.model,
                base_url=self.options.base_url if given else None,
                log_dir=self.context.log_dir,
                headers=self.headers(),
            )
        return self._server

    async def aclose(self) -> None:
        await super().aclose()
        if self._server is not None:
            self._server.stop()
