"""Anthropic's Messages API (``mode: chat``) and Message Batches (``mode: batch``).

The system prompt travels in ``system``, not as a message; stop sequences,
temperature, top_p and max_tokens map one to one; ``n`` samples are ``n``
separate requests (the API has no ``n``), each its own cache entry. A
``refusal`` stop reason is recorded as ``finish_reason: content_filter``.
The Messages hot path shares the lean transport of ``api.py``; the
``anthropic`` SDK drives the batch endpoints (``batch.py``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from distillpipe.errors import ConfigError
from distillpipe.teachers.api import CONTENT_FILTER, ApiOptions, ApiTeacher
from distillpipe.teachers.base import Call, Completion

API_VERSION = "2023-06-01"
_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "refusal": CONTENT_FILTER,
}


class AnthropicOptions(ApiOptions):
    backend: Literal["anthropic"] = "anthropic"
    model: str
    base_url: str = "https://api.anthropic.com"
    api_key_env: str = "ANTHROPIC_API_KEY"
    mode: Literal["chat", "batch"] = Field(
        "chat", description="chat (the Messages API) or batch (Message Batches)"
    )
    concurrency: int = Field(32, ge=1, le=4096, description="most calls in flight")


class AnthropicTeacher(ApiTeacher):
    name = "anthropic"
    Options = AnthropicOptions
    needs_key = True
    key_env_var = "ANTHROPIC_API_KEY"
    options: AnthropicOptions

    @property
    def url(self) -> str:
        return f"{self.options.base_url.rstrip('/')}/v1/messages"

    def headers(self) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "anthropic-version": API_VERSION,
            **self.options.headers,
        }
        if self.api_key:
            headers["x-api-key"] = self.api_key
        return headers

    def body(self, call: Call) -> dict[str, Any]:
        request, params = call.request, call.request.params
        if request.messages is None:
            raise ConfigError(
                "teacher.mode: the anthropic backend takes chat messages, not raw prompts"
            )
        if params.temperature > 1.0:
            raise ConfigError(
                f"generate.temperature: {params.temperature} is above 1.0, Anthropic's maximum"
            )
        system = [m["content"] for m in request.messages if m["role"] == "system"]
        body: dict[str, Any] = {
            "model": self.options.model,
            "max_tokens": params.max_tokens,
            "messages": [m for m in request.messages if m["role"] != "system"],
            "temperature": params.temperature,
        }
        if params.top_p < 1.0:
            body["top_p"] = params.top_p
        if system:
            body["system"] = "\n\n".join(system)
        if params.stop:
            body["stop_sequences"] = list(params.stop)
        return body

    def parse(self, data: Any, top_k: int | None = None) -> Completion:
        text = "".join(
            block.get("text", "") for block in data["content"] if block.get("type") == "text"
        )
        usage = data.get("usage") or {}
        stop_reason = data.get("stop_reason")
        return Completion(
            text=text,
            model=data.get("model") or self.options.model,
            finish_reason=_FINISH_REASONS.get(stop_reason, stop_reason),
            prompt_tokens=usage.get("input_tokens") or 0,
            completion_tokens=usage.get("output_tokens") or 0,
        )
