"""The retry wait shared by API backends: the server's Retry-After when it gives one,
else exponential backoff with jitter."""

from __future__ import annotations

from tenacity import RetryCallState, wait_exponential_jitter

from distillpipe.errors import RetryableTeacherError

_backoff = wait_exponential_jitter(multiplier=0.5, max=30.0, jitter=0.5)


def wait_retry_after_or_backoff():
    def wait(state: RetryCallState) -> float:
        outcome = state.outcome
        error = outcome.exception() if outcome is not None else None
        if isinstance(error, RetryableTeacherError) and error.retry_after is not None:
            return min(error.retry_after, 120.0)
        return _backoff(state)

    return wait
