"""Flow control: the AIMD concurrency limit, rpm/tpm buckets, the servers' rate-limit headers."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from distillpipe.teachers.limits import (
    AdaptiveConcurrency,
    RateLimiter,
    TokenBucket,
    parse_duration,
    server_pause,
)


def test_never_more_calls_in_flight_than_the_limit():
    limiter = AdaptiveConcurrency(4)
    peak = 0

    async def call():
        nonlocal peak
        await limiter.acquire()
        try:
            peak = max(peak, limiter.in_flight)
            await asyncio.sleep(0.001)
        finally:
            limiter.release()

    async def main():
        await asyncio.gather(*(call() for _ in range(50)))

    asyncio.run(main())
    assert peak == 4
    assert limiter.in_flight == 0


def test_a_429_halves_the_limit_once_per_round_trip_and_successes_add_back():
    limiter = AdaptiveConcurrency(64)
    limiter.on_throttled(round_trip=10.0)
    limiter.on_throttled(round_trip=10.0)  # the same burst: ignored
    assert limiter.limit == 32
    for _ in range(32):
        limiter.on_success()
    assert 32.9 < limiter.limit < 33.1  # +1 per window of `limit` successes
    for _ in range(10_000):
        limiter.on_success()
    assert limiter.limit == 64


def test_the_limit_never_drops_below_one():
    limiter = AdaptiveConcurrency(4)
    for _ in range(10):
        limiter._last_decrease = 0.0
        limiter.on_throttled()
    assert limiter.limit == 1


def test_a_cancelled_waiter_gives_its_slot_back():
    limiter = AdaptiveConcurrency(1)

    async def main():
        await limiter.acquire()
        waiter = asyncio.ensure_future(limiter.acquire())
        await asyncio.sleep(0)
        waiter.cancel()
        limiter.release()
        await asyncio.gather(waiter, return_exceptions=True)
        await asyncio.wait_for(limiter.acquire(), 1)

    asyncio.run(main())
    assert limiter.in_flight == 1


def test_requests_per_minute_space_requests_after_a_one_second_burst():
    limiter = RateLimiter(rpm=600)  # 10 a second

    async def main():
        for _ in range(15):
            await limiter.acquire(tokens=1)

    started = time.monotonic()
    asyncio.run(main())
    assert 0.45 <= time.monotonic() - started < 1.5


def test_tokens_per_minute_hold_back_large_requests():
    limiter = RateLimiter(tpm=60_000)  # 1,000 tokens a second

    async def main():
        for _ in range(3):
            await limiter.acquire(tokens=500)

    started = time.monotonic()
    asyncio.run(main())
    assert time.monotonic() - started >= 0.45


def test_a_request_larger_than_a_seconds_allowance_is_charged_in_full():
    bucket = TokenBucket(rate_per_minute=6_000)  # 100 a second, a bucket of 100
    assert bucket.wait_for(300) == pytest.approx(2.0, abs=0.01)  # not min(300, 100)
    assert bucket.wait_for(50) == pytest.approx(2.5, abs=0.01)  # the debt is repaid first


def test_requests_larger_than_a_seconds_allowance_keep_the_tokens_per_minute():
    tpm = 30_000  # 500 tokens a second
    per_second, request, count = tpm / 60, 750, 4  # each request 1.5 seconds' worth
    limiter = RateLimiter(tpm=tpm)
    sent_at: list[float] = []

    async def send() -> None:
        await limiter.acquire(tokens=request)
        sent_at.append(time.monotonic())

    async def main() -> None:
        await asyncio.gather(*(send() for _ in range(count)))  # all waiting at once

    started = time.monotonic()
    asyncio.run(main())
    elapsed = max(sent_at) - started
    total = request * count
    burst = per_second  # the bucket starts full: one second's worth may go at once
    assert (total - burst) / elapsed <= per_second * 1.05
    assert total / elapsed >= 0.7 * per_second


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1s", 1.0), ("6m0s", 360.0), ("20ms", 0.02), ("1h2m3.5s", 3723.5), ("", None)],
)
def test_openai_reset_durations(text: str, seconds: float | None):
    assert parse_duration(text) == (pytest.approx(seconds) if seconds is not None else None)


def test_openai_headers_pause_only_when_nothing_remains():
    assert server_pause({"x-ratelimit-remaining-requests": "12"}) is None
    assert server_pause(
        {"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "1.5s"}
    ) == pytest.approx(1.5)


def test_anthropic_headers_pause_until_the_reset_time():
    reset = (datetime.now(UTC) + timedelta(seconds=30)).isoformat().replace("+00:00", "Z")
    pause = server_pause(
        {
            "anthropic-ratelimit-output-tokens-remaining": "0",
            "anthropic-ratelimit-output-tokens-reset": reset,
        }
    )
    assert 28 <= pause <= 30
