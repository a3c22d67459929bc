"""Orchestration overhead of API teachers: distillpipe's generate stage vs the openai SDK.

A local endpoint (tests/fault_server.py, in its own processes so it shares no
event loop with the client) answers every chat completion after a fixed
latency with unlimited parallelism. Both clients keep ``--in-flight`` calls
open; the ideal is in_flight / latency requests/s. Printed: achieved / ideal
and CPU seconds per request of the client process.

- distillpipe: the whole ``generate`` stage (JSONL in and out, request
  building, cache keys, SQLite cache writes, progress) on an openai teacher;
- a bare aiohttp loop (prebuilt bodies, nothing else): the floor;
- the SDK: ``AsyncOpenAI.chat.completions.create`` under a semaphore, its
  keep-alive pool raised to 2 x in-flight.

Target (issue 6): distillpipe >= 0.7 of ideal.

    python bench/api_overhead.py [--requests 20000] [--in-flight 256] [--latency 0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import orjson

from distillpipe.config import ConfigSource, parse_config
from distillpipe.runner import run_stage
from distillpipe.stages import stage_named
from distillpipe.teachers.server import free_port

TARGET = 0.7
SERVER = Path(__file__).resolve().parent.parent / "tests" / "fault_server.py"


def start_endpoint(port: int, latency: float, workers: int) -> list[subprocess.Popen]:
    command = [sys.executable, str(SERVER), "--port", str(port), "--latency", str(latency)]
    processes = [subprocess.Popen(command) for _ in range(workers)]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/v1/chat/completions", data=body, method="POST"
            )
            with urllib.request.urlopen(request, timeout=2):
                return processes
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("the endpoint did not start")


def prompts(count: int) -> list[str]:
    return [
        f"Write item number {i} of a list of {i % 97} useful household tips." for i in range(count)
    ]


def run_distillpipe(base_url: str, count: int, in_flight: int, work: Path) -> tuple[float, float]:
    source = work / "in.jsonl"
    source.write_bytes(
        b"".join(
            orjson.dumps({"id": f"r{i}", "instruction": p}) + b"\n"
            for i, p in enumerate(prompts(count))
        )
    )
    config = parse_config(
        {
            "name": "bench",
            "seed": 1,
            "cache": {"path": str(work / "cache.sqlite")},
            "teacher": {
                "backend": "openai",
                "model": "gpt-4o-mini",
                "base_url": base_url,
                "concurrency": in_flight,
                "max_retries": 0,
            },
            "generate": {"n": 1, "max_tokens": 64},
        },
        ConfigSource("bench", None),
    )
    cpu, wall = time.process_time(), time.perf_counter()
    result = run_stage(
        stage_named("generate"), config, source, work / "out.jsonl", progress_mode="plain"
    )
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert result.records_out == count and result.stats["teacher"]["teacher_calls"] == count
    return wall, cpu


def run_sdk(base_url: str, count: int, in_flight: int) -> tuple[float, float]:
    import httpx2  # openai 3.x's transport
    from openai import AsyncOpenAI, DefaultAsyncHttpxClient

    async def main() -> None:
        limits = httpx2.Limits(
            max_connections=2 * in_flight, max_keepalive_connections=2 * in_flight
        )
        client = AsyncOpenAI(
            base_url=base_url,
            api_key="unused",
            max_retries=0,
            http_client=DefaultAsyncHttpxClient(limits=limits, timeout=120),
        )
        semaphore = asyncio.Semaphore(in_flight)

        async def one(prompt: str) -> None:
            async with semaphore:
                answer = await client.chat.completions.create(
                    model="gpt-4o-mini",
                    messages=[{"role": "user", "content": prompt}],
                    max_tokens=64,
                )
                assert answer.choices[0].message.content

        await asyncio.gather(*(one(p) for p in prompts(count)))
        await client.close()

    cpu, wall = time.process_time(), time.perf_counter()
    asyncio.run(main())
    return time.perf_counter() - wall, time.process_time() - cpu


def run_bare_aiohttp(base_url: str, count: int, in_flight: int) -> tuple[float, float]:
    """The floor: one aiohttp session posting prebuilt bodies, nothing else."""
    import aiohttp

    async def main() -> None:
        connector = aiohttp.TCPConnector(limit=in_flight)
        async with aiohttp.ClientSession(connector=connector) as session:
            semaphore = asyncio.Semaphore(in_flight)

            async def one(prompt: str) -> None:
                body = orjson.dumps(
                    {"model": "m", "messages": [{"role": "user", "content": prompt}]}
                )
                async with semaphore, session.post(f"{base_url}/chat/completions", data=body) as r:
                    assert orjson.loads(await r.read())["choices"]

            await asyncio.gather(*(one(p) for p in prompts(count)))

    cpu, wall = time.process_time(), time.perf_counter()
    asyncio.run(main())
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--sdk-requests", type=int, default=None, help="default: --requests")
    parser.add_argument("--in-flight", type=int, default=256)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--endpoint-workers", type=int, default=4)
    args = parser.parse_args()
    sdk_requests = args.sdk_requests or args.requests

    load = os.getloadavg()[0]
    port = free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    endpoint = start_endpoint(port, args.latency, args.endpoint_workers)
    ideal = args.in_flight / args.latency
    try:
        with tempfile.TemporaryDirectory(prefix="dp-bench-api-") as work:
            os.environ["DISTILLPIPE_CACHE_DIR"] = work
            dp_wall, dp_cpu = run_distillpipe(base_url, args.requests, args.in_flight, Path(work))
        bare_wall, bare_cpu = run_bare_aiohttp(base_url, args.requests, args.in_flight)
        sdk_wall, sdk_cpu = run_sdk(base_url, sdk_requests, args.in_flight)
    finally:
        for process in endpoint:
            process.terminate()
            process.wait()

    dp_rate, sdk_rate = args.requests / dp_wall, sdk_requests / sdk_wall
    bare_rate = args.requests / bare_wall
    print(f"endpoint: {args.latency * 1000:.0f} ms latency, {args.endpoint_workers} processes; "
          f"{args.in_flight} in flight; ideal {ideal:,.0f} requests/s; {os.cpu_count()} CPUs, "
          f"load average before the run {load:.1f}")  # fmt: skip
    for name, count, rate, cpu in (
        ("distillpipe generate", args.requests, dp_rate, dp_cpu),
        ("bare aiohttp loop", args.requests, bare_rate, bare_cpu),
        ("openai SDK", sdk_requests, sdk_rate, sdk_cpu),
    ):
        print(
            f"{name:22} {count:>7,} requests  {rate:8,.0f} requests/s  "
            f"{rate / ideal:5.2f} of ideal  {cpu / count * 1e6:7,.0f} µs CPU/request"
        )
    verdict = "meets" if dp_rate / ideal >= TARGET else "MISSES"
    print(
        f"distillpipe / SDK throughput: {dp_rate / sdk_rate:.1f}x; "
        f"{verdict} the target of {TARGET} of ideal"
    )


if __name__ == "__main__":
    main()
