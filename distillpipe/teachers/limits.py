"""Client-side flow control for API teachers.

- :class:`AdaptiveConcurrency` keeps at most ``limit`` calls in flight and
  adapts ``limit`` AIMD-style: +1 per ``limit`` successes, halved on a 429
  (at most once per round trip, so one burst of 429s halves it once).
- :class:`RateLimiter` spaces requests and tokens to the configured
  requests-per-minute and tokens-per-minute (token buckets refilled
  continuously), and pauses everything until the server's reset time when its
  rate-limit headers say the remaining budget is spent.

The hot path stays cheap: acquiring a free slot never awaits, and with no
rpm/tpm configured the rate limiter is not built at all.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from collections.abc import Mapping
from datetime import datetime

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class AdaptiveConcurrency:
    def __init__(self, maximum: int, minimum: int = 1) -> None:
        self.maximum, self.minimum = maximum, minimum
        self.limit = float(maximum)
        self.in_flight = 0
        self.decreases = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._last_decrease = 0.0

    async def acquire(self) -> None:
        if self.in_flight < int(self.limit) and not self._waiters:
            self.in_flight += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release()  # we were handed a slot we will not use
            else:
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_flight < int(self.limit):
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.in_flight += 1
                waiter.set_result(None)

    def on_success(self) -> None:
        if self.limit < self.maximum:
            self.limit = min(self.maximum, self.limit + 1.0 / self.limit)
            self._wake()

    def on_throttled(self, round_trip: float = 1.0) -> None:
        """A 429: halve the limit, unless it was halved less than a round trip ago."""
        now = time.monotonic()
        if now - self._last_decrease < max(round_trip, 0.05):
            return
        self._last_decrease = now
        self.limit = max(float(self.minimum), self.limit / 2)
        self.decreases += 1


class TokenBucket:
    """``rate_per_minute`` units refilled continuously; bursts of one second's worth.

    Every take is charged in full, even one larger than the bucket: the level
    goes into debt and the taker waits until the debt is repaid, and so does
    every taker after it. Over any window of ``w`` seconds at most
    ``capacity + w * per_second`` units go out, whatever the request sizes and
    however many callers wait at once.
    """

    def __init__(self, rate_per_minute: float) -> None:
        self.per_second = rate_per_minute / 60.0
        self.capacity = max(1.0, self.per_second)
        self.level = self.capacity
        self._stamp = time.monotonic()

    def wait_for(self, amount: float) -> float:
        """Take ``amount`` (going into debt if need be); seconds to wait before using it."""
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self._stamp) * self.per_second)
        self._stamp = now
        self.level -= amount
        return 0.0 if self.level >= 0 else -self.level / self.per_second


class RateLimiter:
    def __init__(self, rpm: int | None = None, tpm: int | None = None) -> None:
        self.requests = TokenBucket(rpm) if rpm else None
        self.tokens = TokenBucket(tpm) if tpm else None
        self.paused_until = 0.0
        self.waited = 0.0

    async def acquire(self, tokens: int) -> None:
        delay = 0.0
        if self.requests is not None:
            delay = max(delay, self.requests.wait_for(1))
        if self.tokens is not None:
            delay = max(delay, self.tokens.wait_for(tokens))
        delay = max(delay, self.paused_until - time.monotonic())
        if delay > 0:
            self.waited += delay
            await asyncio.sleep(delay)

    def pause_for(self, seconds: float) -> None:
        self.paused_until = max(self.paused_until, time.monotonic() + seconds)


def server_pause(headers: Mapping[str, str]) -> float | None:
    """Seconds until the server's rate-limit window resets when it says none is left.

    Reads OpenAI's ``x-ratelimit-remaining-{requests,tokens}`` with
    ``x-ratelimit-reset-*`` ("1s", "6m0s", "20ms") and Anthropic's
    ``anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-remaining``
    with ``…-reset`` (an RFC 3339 time).
    """
    pause = None
    for kind in ("requests", "tokens"):
        remaining = headers.get(f"x-ratelimit-remaining-{kind}")
        if remaining is not None and _is_zero(remaining):
            reset = parse_duration(headers.get(f"x-ratelimit-reset-{kind}", ""))
            pause = max(pause or 0.0, reset if reset is not None else 1.0)
    for kind in ("requests", "tokens", "input-tokens", "output-tokens"):
        remaining = headers.get(f"anthropic-ratelimit-{kind}-remaining")
        if remaining is not None and _is_zero(remaining):
            reset = seconds_until(headers.get(f"anthropic-ratelimit-{kind}-reset", ""))
            pause = max(pause or 0.0, reset if reset is not None else 1.0)
    return pause


def _is_zero(value: str) -> bool:
    try:
        return float(value) <= 0
    except ValueError:
        return False


def parse_duration(text: str) -> float | None:
    """OpenAI's reset durations: ``"1s"``, ``"6m0s"``, ``"20ms"``, ``"1h2m3.5s"``."""
    parts = _DURATION_PART.findall(text.strip())
    if not parts:
        return None
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)


def seconds_until(stamp: str) -> float | None:
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(0.0, moment.timestamp() - time.time())
