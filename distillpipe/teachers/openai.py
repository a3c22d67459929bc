"""Any OpenAI-compatible endpoint: OpenAI, a vLLM or llama.cpp server, Ollama, SGLang.

Chat completions (``mode: chat``), raw completions (``mode: completion``) or
the OpenAI Batch API (``mode: batch``, chat requests at half price). The hot
path, limits and retries are shared with every API teacher (``api.py``).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from distillpipe.teachers.api import ApiOptions, ApiTeacher, is_local
from distillpipe.teachers.base import Call, Completion, compact_logprobs

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


class OpenAITeacher(ApiTeacher):
    name = "openai"
    Options = OpenAIOptions
    needs_key = True
    key_env_var = "OPENAI_API_KEY"
    batch_endpoint: ClassVar[str] = "/v1/chat/completions"
    options: OpenAIOptions

    @property
    def url(self) -> str:
        base = self.options.base_url.rstrip("/")
        endpoint = "completions" if self.options.mode == "completion" else "chat/completions"
        return f"{base}/{endpoint}"

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", **self.options.headers}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def body(self, call: Call) -> dict[str, Any]:
        request, params = call.request, call.request.params
        body: dict[str, Any] = {
            "model": self.options.model,
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "seed": call.seed,
        }
        if params.stop:
            body["stop"] = list(params.stop)
        if params.presence_penalty:
            body["presence_penalty"] = params.presence_penalty
        if params.frequency_penalty:
            body["frequency_penalty"] = params.frequency_penalty
        if request.messages is not None:
            body["messages"] = list(request.messages)
            if params.top_logprobs is not None:
                body.update(logprobs=True, top_logprobs=params.top_logprobs)
        else:
            body["prompt"] = request.prompt
            if params.top_logprobs is not None:
                body["logprobs"] = params.top_logprobs
        return body

    def parse(self, data: Any) -> Completion:
        choice = data["choices"][0]
        text = choice["message"].get("content") if "message" in choice else choice.get("text")
        usage = data.get("usage") or {}
        return Completion(
            text=text or "",
            model=data.get("model") or self.options.model,
            finish_reason=choice.get("finish_reason"),
            prompt_tokens=usage.get("prompt_tokens") or 0,
            completion_tokens=usage.get("completion_tokens") or 0,
            logprobs=compact_logprobs(choice.get("logprobs")),
        )

    def is_content_filter(self, status: int, data: Any) -> bool:
        error = data.get("error") if isinstance(data, dict) else None
        return isinstance(error, dict) and error.get("code") in _CONTENT_FILTER_CODES
