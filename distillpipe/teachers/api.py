"""What every paid-API teacher shares: the lean HTTP hot path and its flow control.

One aiohttp keep-alive pool per event loop, orjson bodies, no SDK on the hot
path (the official SDKs cost ~10x the CPU per request; they are kept for the
batch and file endpoints in ``batch.py``). Each call:

1. waits for the budget guard (``--max-cost``), the rpm/tpm limiter and a slot
   of the adaptive concurrency limit;
2. is posted with a per-request timeout and retried by tenacity on retryable
   failures (429, 408, 409, 5xx, timeouts, dropped connections, garbled
   bodies) with exponential backoff and jitter, honouring Retry-After;
3. fails the stage at once on anything else (401, 403, 400, context length),
   naming the request. A content-filter refusal is an answer, not an error: it
   is recorded with ``finish_reason: content_filter``.

Subclasses say where to post (``url``), what (``body``), with which headers,
and how to read the answer (``parse``). A body holds what the model's row of
the rules table (``model_rules.py``) lets it take; the batch APIs send the
same bodies.
"""

from __future__ import annotations

import asyncio
import os
from abc import abstractmethod
from collections.abc import AsyncIterator, Sequence
from typing import Any, ClassVar
from urllib.parse import urlparse

import aiohttp
import orjson
from pydantic import Field, SecretStr
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt

from distillpipe.errors import (
    BudgetExceededError,
    ConfigError,
    FatalTeacherError,
    MissingApiKeyError,
    RetryableTeacherError,
)
from distillpipe.teachers.base import (
    CONTENT_FILTER,
    Call,
    Completion,
    SamplingParams,
    Teacher,
    TeacherContext,
    TeacherOptions,
)
from distillpipe.teachers.batch import run_batches
from distillpipe.teachers.limits import AdaptiveConcurrency, RateLimiter, server_pause
from distillpipe.teachers.model_rules import ModelRule, find_rule
from distillpipe.teachers.retry import classify_status, wait_retry_after_or_backoff

_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0"}


class ApiOptions(TeacherOptions):
    base_url: str
    api_key: SecretStr | None = Field(None, description="prefer api_key_env")
    api_key_env: str
    concurrency: int = Field(64, ge=1, le=4096, description="most calls in flight")
    rpm: int | None = Field(None, ge=1, description="client-side requests per minute")
    tpm: int | None = Field(None, ge=1, description="client-side tokens per minute")
    timeout: float = Field(120.0, gt=0, description="seconds per request")
    max_retries: int = Field(6, ge=0)
    retry_backoff: float = Field(0.5, gt=0, description="seconds before the first retry")
    headers: dict[str, str] = Field(default_factory=dict)
    poll_interval: float = Field(30.0, gt=0, description="batch mode: seconds between polls")
    model_rules: dict[str, ModelRule] = Field(
        default_factory=dict,
        description="model-name prefix -> what the model takes; over model_rules.yaml",
    )

    @property
    def rule(self) -> ModelRule:
        """This model's row of the model rules (the config's rows first)."""
        return find_rule(self.backend, self.model, self.model_rules)


def given_key(options: ApiOptions) -> str | None:
    """The API key the config or its environment variable gives, if any."""
    if options.api_key is not None:
        return options.api_key.get_secret_value()
    return os.environ.get(options.api_key_env) or None


def is_local(base_url: str) -> bool:
    host = urlparse(base_url).hostname or ""
    return host in _LOCAL_HOSTS or host.startswith("127.")


class ApiTeacher(Teacher):
    """A teacher behind an HTTP API; ``mode: batch`` hands calls to the provider's batch API."""

    key_header: ClassVar[str] = "Authorization"
    options: ApiOptions

    def __init__(self, options: ApiOptions, context: TeacherContext | None = None) -> None:
        super().__init__(options, context)
        self.api_key = self._find_key()
        self.budget = self.context.budget
        self.attempts = 0
        self.retries = 0
        self._session: aiohttp.ClientSession | None = None
        self._concurrency = AdaptiveConcurrency(options.concurrency)
        self._rate = RateLimiter(options.rpm, options.tpm)
        self._wait = wait_retry_after_or_backoff(options.retry_backoff, offset=1)
        self._fatal: FatalTeacherError | None = None
        self._sendable: set[SamplingParams] = set()

    @classmethod
    def identify(cls, options: ApiOptions) -> dict[str, Any]:  # type: ignore[override]
        """The model's name at this endpoint: the same name elsewhere is another model."""
        return {**super().identify(options), "endpoint": options.base_url.rstrip("/")}

    def _find_key(self) -> str | None:
        key = given_key(self.options)
        if key is not None:
            return key
        if is_local(self.options.base_url):
            return None
        raise MissingApiKeyError(
            f"No API key for {self.options.base_url}: set {self.options.api_key_env} "
            "or teacher.api_key"
        )

    @property
    def mode(self) -> str:
        return "chat" if self.options.mode == "batch" else self.options.mode

    @property
    def concurrency(self) -> int:
        return self.options.concurrency

    @property
    @abstractmethod
    def url(self) -> str: ...

    @abstractmethod
    def headers(self) -> dict[str, str]: ...

    @abstractmethod
    def body(self, call: Call) -> dict[str, Any]: ...

    @abstractmethod
    def parse(self, data: Any, top_k: int | None = None) -> Completion:
        """A 200 answer's body as a completion; ``top_k`` alternatives kept per token."""

    def is_content_filter(self, status: int, data: Any) -> bool:
        """A refusal answered as an HTTP error (Azure's 400 ``content_filter``)."""
        return False

    def refuse_unsendable(self, call: Call) -> None:
        """Config validation stops what the model would reject; this stops it again for
        requests built elsewhere, before anything is sent (``body`` calls it)."""
        params = call.request.params
        if params in self._sendable:
            return
        problem = self.options.sampling_problem(params)
        if problem is not None:
            key, why = problem
            raise ConfigError(f"request {call.request.id}: {key}: {why}")
        self._sendable.add(params)

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self.options.concurrency, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers=self.headers(),
                timeout=aiohttp.ClientTimeout(total=self.options.timeout),
                cookie_jar=aiohttp.DummyCookieJar(),  # an API sets no cookies worth keeping
            )
        return self._session

    async def _post_once(self, call: Call, payload: bytes) -> Completion:
        request_id = call.request.id
        self.attempts += 1
        try:
            async with self.session().post(self.url, data=payload) as response:
                raw = await response.read()
                status, headers = response.status, response.headers
        except (TimeoutError, aiohttp.ClientError) as exc:
            reason = type(exc).__name__ if not str(exc) else f"{type(exc).__name__}: {exc}"
            raise RetryableTeacherError(reason, request_id=request_id) from exc
        pause = server_pause(headers)
        if pause:
            self._rate.pause_for(pause)
        if status != 200:
            if status == 429:
                self._concurrency.on_throttled()
            if status == 400 and self.is_content_filter(status, _loads_or_none(raw)):
                return Completion(text="", model=self.model, finish_reason=CONTENT_FILTER)
            raise classify_status(status, raw, headers, request_id)
        try:
            return self.parse(orjson.loads(raw), call.request.params.top_logprobs)
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError) as exc:
            raise RetryableTeacherError(
                f"malformed response: {raw[:120]!r}", request_id=request_id
            ) from exc

    async def complete(self, call: Call) -> Completion:
        payload = orjson.dumps(self.body(call))
        reserved = self.budget.reserve(call, len(payload)) if self.budget is not None else 0.0
        try:
            await self._concurrency.acquire()
            try:
                if self._fatal is not None:  # one fatal answer stops every call still queued
                    raise self._fatal
                await self._rate.acquire(len(payload) // 4 + call.request.params.max_tokens)
                completion = await self._with_retries(call, payload)
            except FatalTeacherError as exc:
                self._fatal = self._fatal or exc
                raise
            finally:
                self._concurrency.release()
        except BaseException:
            if self.budget is not None:
                self.budget.settle(reserved, None)
            raise
        self._concurrency.on_success()
        if self.budget is not None:
            self.budget.settle(reserved, completion)
        return completion

    async def _with_retries(self, call: Call, payload: bytes) -> Completion:
        try:  # the first attempt skips tenacity's machinery: most calls need no retry
            return await self._post_once(call, payload)
        except RetryableTeacherError as first:
            if self.options.max_retries == 0:
                raise
            await asyncio.sleep(self._wait.first(first))
            self.retries += 1
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(RetryableTeacherError),
            stop=stop_after_attempt(self.options.max_retries),
            wait=self._wait,
            before_sleep=self._count_retry,
            reraise=True,
        ):
            with attempt:
                return await self._post_once(call, payload)
        raise AssertionError("unreachable")

    def _count_retry(self, state: Any) -> None:
        self.retries += 1

    async def generate(self, calls: Sequence[Call]) -> AsyncIterator[tuple[Call, Completion]]:
        if self.options.mode == "batch":
            async for item in run_batches(self, calls):
                yield item
            return
        async for item in run_concurrently(self.complete, calls, self._drained):
            yield item

    async def _drained(self) -> None:
        """Wait until no call of this teacher is in flight (any dispatch batch's)."""
        while self._concurrency.in_flight:
            await asyncio.sleep(0.01)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def run_concurrently(
    complete: Any, calls: Sequence[Call], drained: Any = None
) -> AsyncIterator[Any]:
    """Yield ``(call, completion)`` as calls finish.

    A fatal error cancels the rest at once. A budget stop lets the calls
    already in flight finish, this batch's and (``drained``) the other
    batches', since they are paid for and the cache keeps them; then raises.
    """

    async def one(call: Call) -> tuple[Call, Completion]:
        return call, await complete(call)

    tasks = [asyncio.ensure_future(one(call)) for call in calls]
    budget_stop: BudgetExceededError | None = None
    try:
        for finished in asyncio.as_completed(tasks):
            try:
                yield await finished
            except BudgetExceededError as exc:
                budget_stop = budget_stop or exc
        if budget_stop is not None:
            if drained is not None:
                await drained()
            raise budget_stop
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _loads_or_none(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
