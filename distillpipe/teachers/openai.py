"""Any OpenAI-compatible endpoint: OpenAI, a vLLM or llama.cpp server, Ollama, SGLang.

The hot path is a lean aiohttp client (one keep-alive pool, orjson bodies):
on two cores the official SDK tops out near 200 requests/s, a plain aiohttp
loop near 2,000. Calls run concurrently up to ``concurrency``; retryable
failures (429, 408, 409, 5xx, timeouts, dropped connections, garbled bodies)
are retried with exponential backoff and jitter, honouring Retry-After;
anything else stops the stage with a one-line error naming the request.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal
from urllib.parse import urlparse

import aiohttp
import orjson
from pydantic import Field, SecretStr
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt

from distillpipe.errors import (
    FatalTeacherError,
    MissingApiKeyError,
    RetryableTeacherError,
    TeacherError,
)
from distillpipe.teachers.base import (
    Call,
    Completion,
    Teacher,
    TeacherOptions,
    compact_logprobs,
)
from distillpipe.teachers.retry import wait_retry_after_or_backoff
from distillpipe.teachers.server import LaunchOptions, ManagedServer

_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0"}
_RETRYABLE_STATUS = {408, 409, 429}


class OpenAIOptions(TeacherOptions):
    backend: Literal["openai"] = "openai"
    model: str
    base_url: str = "https://api.openai.com/v1"
    api_key: SecretStr | None = Field(None, description="prefer api_key_env")
    api_key_env: str = "OPENAI_API_KEY"
    mode: Literal["chat", "completion"] = "chat"
    concurrency: int = Field(64, ge=1, le=4096)
    timeout: float = Field(120.0, gt=0, description="seconds per request")
    max_retries: int = Field(6, ge=0)
    headers: dict[str, str] = Field(default_factory=dict)
    launch: LaunchOptions | None = Field(
        None, description="start a local server (vllm serve, llama.cpp, ...) unless one answers"
    )


def is_local(base_url: str) -> bool:
    host = urlparse(base_url).hostname or ""
    return host in _LOCAL_HOSTS or host.startswith("127.")


class OpenAITeacher(Teacher):
    name = "openai"
    Options = OpenAIOptions
    needs_key = True
    key_env_var = "OPENAI_API_KEY"
    options: OpenAIOptions

    def __init__(self, options: OpenAIOptions) -> None:
        super().__init__(options)
        self._api_key = self._find_key()
        self._session: aiohttp.ClientSession | None = None
        self._semaphore: asyncio.Semaphore | None = None
        self._url = self._endpoint(options.base_url)
        self._server: ManagedServer | None = None

    def _endpoint(self, base_url: str) -> str:
        base = base_url.rstrip("/")
        return f"{base}/chat/completions" if self.options.mode == "chat" else f"{base}/completions"

    def _find_key(self) -> str | None:
        if self.options.api_key is not None:
            return self.options.api_key.get_secret_value()
        key = os.environ.get(self.options.api_key_env)
        if key:
            return key
        if is_local(self.options.base_url) or self.options.launch is not None:
            return None
        raise MissingApiKeyError(
            f"No API key for {self.options.base_url}: set {self.options.api_key_env} "
            "or teacher.api_key"
        )

    @property
    def concurrency(self) -> int:
        return self.options.concurrency

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", **self.options.headers}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _session_for_loop(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self.options.concurrency, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers=self._headers(),
                timeout=aiohttp.ClientTimeout(total=self.options.timeout),
                json_serialize=lambda v: orjson.dumps(v).decode(),
            )
            self._semaphore = asyncio.Semaphore(self.options.concurrency)
        return self._session

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

    async def _post_once(self, call: Call, payload: bytes) -> Completion:
        session = self._session_for_loop()
        request_id = call.request.id
        try:
            async with session.post(self._url, data=payload) as response:
                raw = await response.read()
                if response.status != 200:
                    raise classify_status(response.status, raw, response.headers, request_id)
        except (TimeoutError, aiohttp.ClientError) as exc:
            reason = type(exc).__name__ if not str(exc) else f"{type(exc).__name__}: {exc}"
            raise RetryableTeacherError(reason, request_id=request_id) from exc
        try:
            data = orjson.loads(raw)
            choice = data["choices"][0]
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError) as exc:
            raise RetryableTeacherError(
                f"malformed response: {raw[:120]!r}", request_id=request_id
            ) from exc
        text = choice["message"].get("content") if "message" in choice else choice.get("text")
        usage = data.get("usage") or {}
        return Completion(
            text=text or "",
            model=data.get("model") or self.options.model,
            finish_reason=choice.get("finish_reason"),
            prompt_tokens=usage.get("prompt_tokens") or 0,
            completion_tokens=usage.get("completion_tokens") or 0,
            logprobs=compact_logprobs(choice.get("logprobs"), call.request.params.top_logprobs),
        )

    async def complete(self, call: Call) -> Completion:
        payload = orjson.dumps(self.body(call))
        self._session_for_loop()
        assert self._semaphore is not None
        async with self._semaphore:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(RetryableTeacherError),
                stop=stop_after_attempt(self.options.max_retries + 1),
                wait=wait_retry_after_or_backoff(),
                reraise=True,
            ):
                with attempt:
                    return await self._post_once(call, payload)
        raise AssertionError("unreachable")

    async def generate(self, calls: Sequence[Call]) -> AsyncIterator[tuple[Call, Completion]]:
        if self.options.launch is None:
            async for item in self._complete_all(calls):
                yield item
            return
        server = self.managed_server()
        self._url = self._endpoint(await server.start())
        async for item in server.watch(self._complete_all(calls)):
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
                log_dir=self.log_dir,
            )
        return self._server

    async def _complete_all(self, calls: Sequence[Call]) -> AsyncIterator[tuple[Call, Completion]]:
        async def one(call: Call) -> tuple[Call, Completion]:
            return call, await self.complete(call)

        tasks = [asyncio.ensure_future(one(call)) for call in calls]
        try:
            for finished in asyncio.as_completed(tasks):
                yield await finished
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._server is not None:
            self._server.stop()


def classify_status(status: int, body: bytes, headers: Any, request_id: str) -> TeacherError:
    """Map an HTTP error to a retryable or fatal teacher error."""
    detail = _error_message(body)
    if status in _RETRYABLE_STATUS or status >= 500:
        return RetryableTeacherError(
            f"HTTP {status}: {detail}", request_id=request_id, retry_after=retry_after(headers)
        )
    if status in (401, 403):
        return FatalTeacherError(
            f"HTTP {status}: authentication failed ({detail}); check the API key",
            request_id=request_id,
        )
    return FatalTeacherError(f"HTTP {status}: {detail}", request_id=request_id)


def _error_message(body: bytes) -> str:
    try:
        data = orjson.loads(body)
        error = data.get("error", data) if isinstance(data, dict) else data
        message = error.get("message") if isinstance(error, dict) else error
        return str(message)[:300]
    except orjson.JSONDecodeError:
        return body[:300].decode(errors="replace").strip() or "(empty body)"


def retry_after(headers: Any) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds), if given."""
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 1e-3), ("Retry-After", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) * scale)
        except ValueError:
            continue
    return None
