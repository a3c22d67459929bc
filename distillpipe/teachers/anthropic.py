"""Anthropic's Messages API (``mode: chat``) and Message Batches (``mode: batch``).

The system prompt travels in ``system``, not as a message; stop sequences,
temperature, top_p and max_tokens map one to one; ``n`` samples are ``n``
separate requests (the API has no ``n``), each its own cache entry. A
``refusal`` stop reason is recorded as ``finish_reason: content_filter``.
The Messages hot path shares the lean transport of ``api.py``; the
``anthropic`` SDK drives the batch endpoints (``batch.py``).

Extended thinking (``teacher.thinking_budget``, for the models whose row of
``model_rules.yaml`` says ``thinking``) sends ``thinking: {type: enabled,
budget_tokens}``. The Messages API then takes no temperature or top_k, and
top_p only from 0.95, so none of them is sent; the budget counts toward
``max_tokens`` and must stay below it. Thinking is billed as output: the
one ``output_tokens`` count holds it. Anthropic does not say how much of it
was thinking, so ``reasoning_tokens`` is that count less the answer's tokens
counted with ``cl100k_base`` (an estimate, as Anthropic prompt counts are).
The thinking blocks become the response's ``reasoning`` (a summary on the
Claude 4 models, the full thinking on Claude 3.7; ``redacted`` when only
encrypted blocks came) and are kept as sent, signatures included, in
``reasoning_blocks``, which a later turn must replay unchanged.

A response format (``structured.py``) becomes a forced tool call: one tool,
``answer``, whose ``input_schema`` is the schema (``json``: any object), and
``tool_choice: {type: tool, name: answer}``; the answer is the ``tool_use``
block's ``input`` as JSON text. Anthropic forces no tool while thinking, and a
tool's input is an object: a format with ``thinking_budget``, or a schema whose
root is not an object, fails at config validation. Message Batches send the
same bodies.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from distillpipe.errors import ConfigError
from distillpipe.structured import ResponseFormat, json_text
from distillpipe.teachers.api import ApiOptions, ApiTeacher
from distillpipe.teachers.base import CONTENT_FILTER, Call, Completion, SamplingParams
from distillpipe.teachers.reasoning import ReasoningKind, from_anthropic_blocks
from distillpipe.tokens import count_tokens, encoding_named

API_VERSION = "2023-06-01"
_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "refusal": CONTENT_FILTER,
    "tool_use": "stop",  # the forced tool call of a response format: the answer
}
ANSWER_TOOL = "answer"
# What the Messages API takes no value of (or none worth sending) while thinking.
THINKING_DROPS = ("temperature", "top_p")
MIN_THINKING_BUDGET = 1024


class AnthropicOptions(ApiOptions):
    backend: Literal["anthropic"] = "anthropic"
    model: str
    base_url: str = "https://api.anthropic.com"
    api_key_env: str = "ANTHROPIC_API_KEY"
    mode: Literal["chat", "batch"] = Field(
        "chat", description="chat (the Messages API) or batch (Message Batches)"
    )
    concurrency: int = Field(32, ge=1, le=4096, description="most calls in flight")
    thinking_budget: int | None = Field(
        None,
        ge=MIN_THINKING_BUDGET,
        description="extended thinking: most tokens spent thinking, below each max_tokens",
    )

    def request_params(self, params: SamplingParams) -> dict[str, Any]:
        if self.thinking_budget is None:
            return self.rule.sent(params)
        return {**self.rule.sent(params, THINKING_DROPS), "thinking_budget": self.thinking_budget}

    def option_problem(self) -> tuple[str, str] | None:
        if self.thinking_budget is not None and not self.rule.thinking:
            return "thinking_budget", f"{self.model} has no extended thinking"
        return None

    def schema_problem(self, response_format: ResponseFormat) -> tuple[str, str] | None:
        if self.thinking_budget is not None:
            return "thinking_budget", (
                "the anthropic backend holds answers to a schema through a forced tool "
                "call, which Anthropic refuses while thinking: drop one of them"
            )
        if response_format.schema.get("type", "object") != "object":
            return "backend", (
                "the anthropic backend holds answers to a schema through a tool's input, "
                "which is an object: give the schema `type: object` at its root"
            )
        return None

    def sampling_problem(self, params: SamplingParams) -> tuple[str, str] | None:
        budget = self.thinking_budget
        if budget is not None and params.max_tokens <= budget:
            return "max_tokens", (
                f"{params.max_tokens} is not above teacher.thinking_budget {budget}: "
                "the thinking counts toward max_tokens"
            )
        sent = self.request_params(params)
        if sent.get("temperature", 0.0) > 1.0:
            return "temperature", f"{params.temperature} is above 1.0, Anthropic's maximum"
        return self.rule.refusal(sent, self.model)


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
        sent = self.options.request_params(params)
        if sent.get("temperature", 0.0) > 1.0:
            raise ConfigError(
                f"generate.temperature: {params.temperature} is above 1.0, Anthropic's maximum"
            )
        self.refuse_unsendable(call)
        system = [m["content"] for m in request.messages if m["role"] == "system"]
        body: dict[str, Any] = {
            "model": self.options.model,
            "max_tokens": sent["max_tokens"],
            "messages": [m for m in request.messages if m["role"] != "system"],
        }
        if "temperature" in sent:
            body["temperature"] = sent["temperature"]
        if sent.get("top_p", 1.0) < 1.0:
            body["top_p"] = sent["top_p"]
        if system:
            body["system"] = "\n\n".join(system)
        if sent["stop"]:
            body["stop_sequences"] = list(sent["stop"])
        if "thinking_budget" in sent:
            body["thinking"] = {"type": "enabled", "budget_tokens": sent["thinking_budget"]}
        if request.response_format is not None:
            problem = self.options.schema_problem(request.response_format)
            if problem is not None:
                raise ConfigError(f"request {request.id}: teacher.{problem[0]}: {problem[1]}")
            tool = {
                "name": ANSWER_TOOL,
                "description": "Give the answer: its input is the whole answer.",
                "input_schema": request.response_format.schema,
            }
            body["tools"] = [tool]
            body["tool_choice"] = {"type": "tool", "name": ANSWER_TOOL}
        return body

    def parse(self, data: Any, top_k: int | None = None) -> Completion:
        blocks = data["content"]
        parsed = from_anthropic_blocks(blocks, thinking_kind(data.get("model") or self.model))
        text = parsed.answer
        tool_calls = [b for b in blocks if b.get("type") == "tool_use"]
        if tool_calls:  # a response format's forced tool call: its input is the answer
            text = json_text(tool_calls[0].get("input"))
        usage = data.get("usage") or {}
        output_tokens = usage.get("output_tokens") or 0
        thought = parsed.blocks is not None
        stop_reason = data.get("stop_reason")
        return Completion(
            text=text,
            reasoning=parsed.reasoning,
            reasoning_kind=parsed.kind,
            reasoning_blocks=parsed.blocks,
            model=data.get("model") or self.options.model,
            finish_reason=_FINISH_REASONS.get(stop_reason, stop_reason),
            prompt_tokens=usage.get("input_tokens") or 0,
            completion_tokens=output_tokens,
            reasoning_tokens=_thinking_tokens(output_tokens, text) if thought else 0,
        )


# Claude 3.7 Sonnet returns its full thinking; the Claude 4 models a summary of it.
_FULL_THINKING = ("claude-3-7",)


def thinking_kind(model: str) -> ReasoningKind:
    return "raw" if model.startswith(_FULL_THINKING) else "summary"


def _thinking_tokens(output_tokens: int, answer: str) -> int:
    """Of the output, what the answer does not account for (cl100k_base counts it)."""
    return max(0, output_tokens - count_tokens(encoding_named("cl100k_base"), answer))
