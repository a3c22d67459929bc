"""Every API teacher under injected faults: a generate run completes with each record once.

The fault server fails the first ``times`` attempts of every distinct request
in the chosen way; the teacher must retry within its bound, never answer a
record twice, and stop at once on what retrying cannot fix.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from api_runs import api_config, generate
from fault_server import FaultServer

from distillpipe.errors import FatalTeacherError

RECORDS = 24
MAX_RETRIES = 3

RETRYABLE_FAULTS = [
    ("429", {"retry_after": "0"}),
    ("429ms", {}),
    ("500", {}),
    ("503", {}),
    ("drop", {}),
    ("stall", {"stall": 1.0}),
    ("malformed", {}),
]


def assert_every_record_once(server: FaultServer, records: list[dict]) -> None:
    assert [record["id"] for record in records] == [f"r{i}" for i in range(RECORDS)]
    assert all(len(record["responses"]) == 1 for record in records)
    for i, record in enumerate(records):
        assert record["responses"][0]["text"] == f"echo: Say the number {i} in words."
    assert len(server.answered) == RECORDS
    assert set(server.answered.values()) == {1}, "a request was answered more than once"


@pytest.mark.parametrize("backend", ["openai", "anthropic"])
@pytest.mark.parametrize(
    ("fault", "settings"), RETRYABLE_FAULTS, ids=[f for f, _ in RETRYABLE_FAULTS]
)
def test_a_retryable_fault_is_retried_within_bound_and_every_record_lands_once(
    fault_server: FaultServer, tmp_path: Path, backend: str, fault: str, settings: dict
):
    fault_server.set_fault(fault, times=2, **settings)
    config = api_config(fault_server, backend, timeout=0.5, max_retries=MAX_RETRIES)
    result, records = generate(config, tmp_path, RECORDS)
    assert_every_record_once(fault_server, records)
    assert set(fault_server.attempts.values()) == {3}  # two faults, then the answer
    assert result.stats["teacher"]["teacher_calls"] == RECORDS


def test_retries_stop_at_their_bound(fault_server: FaultServer, tmp_path: Path):
    fault_server.set_fault("503", times=10)
    config = api_config(fault_server, max_retries=2)
    with pytest.raises(Exception, match=r"request r\d+: HTTP 503"):
        generate(config, tmp_path, 4)
    assert max(fault_server.attempts.values()) == 3
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize("backend", ["openai", "anthropic"])
def test_a_401_stops_at_once_naming_the_request_and_the_run_resumes(
    fault_server: FaultServer, tmp_path: Path, backend: str
):
    fault_server.set_fault("401")
    config = api_config(fault_server, backend, concurrency=2)
    started = time.monotonic()
    with pytest.raises(FatalTeacherError, match=r"^request r\d+: HTTP 401: .*check the API key"):
        generate(config, tmp_path, RECORDS)
    assert time.monotonic() - started < 2.0
    assert sum(fault_server.attempts.values()) <= 2, "a 401 must not be retried"
    assert not (tmp_path / "out.jsonl").exists()

    fault_server.set_fault(None)
    _, records = generate(config, tmp_path, RECORDS)
    assert_every_record_once(fault_server, records)


def test_context_length_exceeded_is_fatal_and_says_so(fault_server: FaultServer, tmp_path: Path):
    fault_server.set_fault("context_length", times=100)
    with pytest.raises(FatalTeacherError, match=r"does not fit the model's context"):
        generate(api_config(fault_server), tmp_path, 3)
    assert max(fault_server.attempts.values()) == 1


def test_a_content_filter_refusal_is_recorded_not_retried(
    fault_server: FaultServer, tmp_path: Path
):
    fault_server.set_fault("content_filter", times=100)
    _, records = generate(api_config(fault_server), tmp_path, 3)
    assert [r["responses"][0]["finish_reason"] for r in records] == ["content_filter"] * 3
    assert set(fault_server.attempts.values()) == {1}


def test_429s_halve_the_concurrency_limit(fault_server: FaultServer, tmp_path: Path):
    fault_server.set_fault("429", times=1, retry_after="0")
    config = api_config(fault_server, concurrency=16)
    from distillpipe.stages.base import StageContext

    ctx = StageContext(config)
    dispatcher = ctx.dispatcher()
    import asyncio

    from distillpipe.teachers.base import Request, SamplingParams

    requests = [
        Request(f"q{i}", SamplingParams(max_tokens=4), ({"role": "user", "content": f"{i}"},))
        for i in range(32)
    ]

    async def run():
        try:
            return await dispatcher.resolve(requests)
        finally:
            await ctx.aclose()

    answers = asyncio.run(run())
    assert len(answers) == 32
    limiter = dispatcher.teacher._concurrency
    assert limiter.decreases >= 1
    assert limiter.limit < 16


def test_exhausted_rate_limit_headers_pause_new_requests(fault_server: FaultServer, tmp_path: Path):
    fault_server.rate_limit_headers = {
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "250ms",
    }
    config = api_config(fault_server, concurrency=1)
    started = time.monotonic()
    generate(config, tmp_path, 4)
    assert time.monotonic() - started >= 0.7  # three waits for the window to reset


def test_requests_per_minute_are_spaced(fault_server: FaultServer, tmp_path: Path):
    config = api_config(fault_server, rpm=1200)  # 20 a second, bursts of 20
    started = time.monotonic()
    generate(config, tmp_path, 40)
    assert time.monotonic() - started >= 0.9


def test_the_api_key_reaches_no_output_cache_or_stats(
    fault_server: FaultServer, tmp_path: Path, private_cache_dir: Path
):
    result, _ = generate(api_config(fault_server), tmp_path, 3)
    for path in [tmp_path / "out.jsonl", *private_cache_dir.rglob("*")]:
        if path.is_file():
            assert b"sk-test-secret" not in path.read_bytes(), path
    assert "sk-test-secret" not in repr(result.stats)


def test_retry_after_is_honoured_over_the_backoff(fault_server: FaultServer, tmp_path: Path):
    fault_server.set_fault("429", times=1, retry_after="1")
    started = time.monotonic()
    generate(api_config(fault_server, retry_backoff=0.01), tmp_path, 2)
    assert time.monotonic() - started >= 1.0
    assert set(fault_server.attempts.values()) == {2}
