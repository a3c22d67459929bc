"""Any OpenAI-compatible endpoint: OpenAI, a vLLM or llama.cpp server, Ollama, SGLang.

Chat completions (``mode: chat``), raw completions (``mode: completion``) or
the OpenAI Batch API (``mode: batch``, chat requests at half price). The hot
path, limits and retries are shared with every API teacher (``api.py``).

Reasoning models (the o-series, gpt-5) follow their row of ``model_rules.yaml``:
``max_completion_tokens`` for ``max_tokens``, no sampling knobs they reject,
``teacher.reasoning_effort`` where they take it. Their hidden reasoning is
billed inside ``completion_tokens``; ``usage.completion_tokens_details
.reasoning_tokens`` says how much of it, and is kept as ``reasoning_tokens``.
A trace the server returns (``message.reasoning_content`` from vLLM's and
SGLang's reasoning parsers and DeepSeek, ``message.reasoning`` from other
gateways) is kept as ``reasoning`` (``reasoning.py``).

Cache keys hold the endpoint and, for a server on this machine, the model it
reports serving (``served.py``): ``model`` may be a mere label there.

A response format (``structured.py``) travels as ``teacher.schema_via`` says:
``response_format`` (OpenAI's ``{type: json_schema, json_schema: {name, schema,
strict}}``; ``json`` as ``{type: json_object}``), ``json_object``
(llama-cpp-python's server: ``{type: json_object, schema}``, chat only),
``grammar`` (GBNF from the schema, which llama-cpp-python's server takes on both
endpoints), ``structured_outputs`` (vLLM >= 0.10: ``{json: schema}``) or
``guided_json`` (older vLLM). A structured-output refusal (``message.refusal``)
is recorded as ``finish_reason: content_filter``. A trace a reasoning parser
returns apart stays apart: the schema holds for ``content`` only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from distillpipe.errors import ConfigError, MissingApiKeyError
from distillpipe.structured import ResponseFormat, gbnf
from distillpipe.teachers.api import ApiOptions, ApiTeacher, given_key, is_local
from distillpipe.teachers.base import (
    CONTENT_FILTER,
    Call,
    Completion,
    SamplingParams,
    TeacherContext,
    compact_logprobs,
)
from distillpipe.teachers.reasoning import Parsed, from_openai_message
from distillpipe.teachers.served import launch_recipe, models_listing, served_model
from distillpipe.teachers.server import LaunchOptions, ManagedServer

__all__ = ["OpenAIOptions", "OpenAITeacher", "is_local"]

_CONTENT_FILTER_CODES = {"content_filter", "content_policy_violation"}
SchemaVia = Literal[
    "response_format", "json_object", "grammar", "structured_outputs", "guided_json"
]


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
    schema_via: SchemaVia = Field(
        "response_format",
        description="how a response format is sent: response_format (OpenAI), json_object "
        "(llama-cpp-python server, chat), grammar (llama-cpp-python server), "
        "structured_outputs (vLLM >= 0.10), guided_json (older vLLM)",
    )
    schema_strict: bool = Field(
        True, description="schema_via response_format: OpenAI's strict schema adherence"
    )

    def request_params(self, params: SamplingParams) -> dict[str, Any]:
        sent = self.rule.sent(params)
        if self.reasoning_effort is not None:
            sent["reasoning_effort"] = self.reasoning_effort
        return sent

    def format_params(self) -> dict[str, Any]:
        changed: dict[str, Any] = {}
        if self.schema_via != "response_format":  # other mechanisms, other answers
            changed["schema_via"] = self.schema_via
        if not self.schema_strict:
            changed["schema_strict"] = False
        return changed

    def schema_problem(self, response_format: ResponseFormat) -> tuple[str, str] | None:
        if self.mode == "completion" and self.schema_via in ("response_format", "json_object"):
            return "schema_via", (
                f"the openai backend sends {self.schema_via} with chat requests only; in "
                "completion mode use grammar (llama.cpp server) or structured_outputs / "
                "guided_json (vLLM server)"
            )
        return None

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

    @classmethod
    def identify(cls, options: OpenAIOptions) -> dict[str, Any]:  # type: ignore[override]
        """The endpoint and the model a local server reports serving. With ``launch``:
        the server that answers at ``base_url`` (or ``launch.port``) if one does, as it
        is reused; else the launch recipe, known without starting it."""
        identity = super().identify(options)
        headers = {**options.headers}
        if key := given_key(options):
            headers["Authorization"] = f"Bearer {key}"
        if options.launch is not None:
            url = managed_server(options, log_dir=None).reusable_url()
            listing = models_listing(url, headers) if url is not None else None
            if listing is None:  # the server would be started: known by its recipe
                del identity["endpoint"]
                return {**identity, "launch": launch_recipe(options.launch, options.model)}
            identity["endpoint"] = url  # the one answering is reused
        else:  # a remote API is not asked: its names name models
            url = options.base_url
            listing = models_listing(url, headers) if is_local(url) else None
        served = served_model(listing, options.model, local=is_local(url)) if listing else None
        return {**identity, "serves": served} if served else identity

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
        if request.response_format is not None:
            body.update(self.format_fields(call))
        return body

    def format_fields(self, call: Call) -> dict[str, Any]:
        """The body fields that hold the answer to the request's response format."""
        response_format = call.request.response_format
        assert response_format is not None
        problem = self.options.schema_problem(response_format)
        if problem is not None:
            raise ConfigError(f"request {call.request.id}: teacher.{problem[0]}: {problem[1]}")
        via, schema = self.options.schema_via, response_format.schema
        if via == "response_format":
            if response_format.kind == "json":
                return {"response_format": {"type": "json_object"}}
            named = {"name": "answer", "schema": schema, "strict": self.options.schema_strict}
            return {"response_format": {"type": "json_schema", "json_schema": named}}
        if via == "json_object":
            return {"response_format": {"type": "json_object", "schema": schema}}
        if via == "grammar":
            return {"grammar": gbnf(response_format)}
        if via == "structured_outputs":
            if response_format.kind == "json":
                return {"structured_outputs": {"json_object": True}}
            return {"structured_outputs": {"json": schema}}
        return {"guided_json": schema}

    def parse(self, data: Any, top_k: int | None = None) -> Completion:
        choice = data["choices"][0]
        finish_reason = choice.get("finish_reason")
        if "message" in choice:
            parsed = from_openai_message(choice["message"])
            if choice["message"].get("refusal") and not parsed.answer:
                finish_reason = CONTENT_FILTER  # a structured-output refusal is an answer
        else:
            parsed = Parsed(choice.get("text") or "")
        usage = data.get("usage") or {}
        details = usage.get("completion_tokens_details") or {}
        return Completion(
            text=parsed.answer,
            reasoning=parsed.reasoning,
            reasoning_kind=parsed.kind,
            model=data.get("model") or self.options.model,
            finish_reason=finish_reason,
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
        if self._server is None:
            self._server = managed_server(
                self.options, log_dir=self.context.log_dir, headers=self.headers()
            )
        return self._server

    async def aclose(self) -> None:
        await super().aclose()
        if self._server is not None:
            self._server.stop()


def managed_server(
    options: OpenAIOptions, *, log_dir: Path | None, headers: dict[str, str] | None = None
) -> ManagedServer:
    """The (not yet started) server ``options.launch`` describes; ``headers`` go with
    its readiness checks (a server started with ``--api-key`` guards ``/v1/models``)."""
    assert options.launch is not None
    given = "base_url" in options.model_fields_set
    return ManagedServer(
        options.launch,
        model=options.model,
        base_url=options.base_url if given else None,
        log_dir=log_dir,
        headers=headers,
    )
