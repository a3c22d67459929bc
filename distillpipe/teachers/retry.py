"""Which API failures are worth retrying, and how long to wait before the next try.

Retryable: 429, 408, 409, 5xx, timeouts, dropped connections, garbled bodies.
Fatal: 401/403 (the key), 400 (the request, e.g. context length exceeded) and
any other 4xx. The wait is the server's Retry-After / retry-after-ms when it
gives one, else exponential backoff with jitter.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson
from tenacity import RetryCallState, wait_exponential_jitter

from distillpipe.errors import FatalTeacherError, RetryableTeacherError, TeacherError

_RETRYABLE_STATUS = {408, 409, 429}
_CONTEXT_LENGTH_MARKERS = ("context_length_exceeded", "context length", "prompt is too long")
MAX_SERVER_WAIT = 120.0


class RetryWait:
    """Tenacity's wait: the server's Retry-After when it gives one, else exponential
    backoff with jitter. ``offset`` shifts the attempt count for retries that
    begin after an attempt made outside tenacity."""

    def __init__(self, initial: float = 0.5, offset: int = 0) -> None:
        self.offset = offset
        self.backoff = wait_exponential_jitter(multiplier=initial, max=30.0, jitter=initial)

    def __call__(self, state: RetryCallState) -> float:
        outcome = state.outcome
        error = outcome.exception() if outcome is not None else None
        if isinstance(error, RetryableTeacherError) and error.retry_after is not None:
            return min(error.retry_after, MAX_SERVER_WAIT)
        if self.offset:
            state = copy.copy(state)
            state.attempt_number += self.offset
        return self.backoff(state)

    def first(self, error: RetryableTeacherError) -> float:
        """The wait after a first attempt made outside tenacity."""
        if error.retry_after is not None:
            return min(error.retry_after, MAX_SERVER_WAIT)
        return self.backoff(_FirstAttempt())


class _FirstAttempt:
    attempt_number = 1


def wait_retry_after_or_backoff(initial: float = 0.5, offset: int = 0) -> RetryWait:
    return RetryWait(initial, offset)


def classify_status(status: int, body: bytes, headers: Any, request_id: str) -> TeacherError:
    """Map an HTTP error to a retryable or fatal teacher error."""
    detail = error_message(body)
    if status in _RETRYABLE_STATUS or status >= 500:
        return RetryableTeacherError(
            f"HTTP {status}: {detail}", request_id=request_id, retry_after=retry_after(headers)
        )
    if status in (401, 403):
        return FatalTeacherError(
            f"HTTP {status}: authentication failed ({detail}); check the API key",
            request_id=request_id,
        )
    if any(marker in detail.lower() for marker in _CONTEXT_LENGTH_MARKERS):
        return FatalTeacherError(
            f"HTTP {status}: the prompt does not fit the model's context ({detail}); "
            "shorten the input or lower max_tokens",
            request_id=request_id,
        )
    return FatalTeacherError(f"HTTP {status}: {detail}", request_id=request_id)


def error_message(body: bytes) -> str:
    try:
        data = orjson.loads(body)
        error = data.get("error", data) if isinstance(data, dict) else data
        message = error.get("message") if isinstance(error, dict) else error
        code = error.get("code") if isinstance(error, dict) else None
        text = str(message)[:300]
        return f"{text} [{code}]" if code and str(code) not in text else text
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
