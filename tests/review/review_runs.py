"""Run directories written by hand for the review tests, and a `distillpipe review` server."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from distillpipe.io import write_jsonl
from distillpipe.review.sample import draw_sample
from distillpipe.review.server import ReviewServer, bind, serve


def response(text: str, sample: int = 0) -> dict[str, Any]:
    return {"text": text, "model": "m", "finish_reason": "stop", "usage": {}, "sample": sample}


def write_run(
    root: Path,
    kept: list[dict[str, Any]],
    rejected: list[dict[str, Any]],
    filters: list[dict[str, Any]],
    *,
    stats: dict[str, Any] | None = None,
    seed: int = 0,
    name: str = "hand",
    extra_stages: dict[str, list[dict[str, Any]]] | None = None,
) -> Path:
    """A run directory as `distillpipe run` leaves it after its filter stage: the
    manifest (config with ``filters``), filter.jsonl and filter.rejected.jsonl."""
    run = root / name
    run.mkdir(parents=True, exist_ok=True)
    stages: dict[str, Any] = {}
    for index, (stage, records) in enumerate((extra_stages or {}).items()):
        write_jsonl(run / f"{stage}.jsonl", records)
        stages[stage] = {"status": "done", "output": f"{stage}.jsonl", "started_at": index}
    write_jsonl(run / "filter.jsonl", kept)
    write_jsonl(run / "filter.rejected.jsonl", rejected)
    stages["filter"] = {
        "status": "done",
        "output": "filter.jsonl",
        "records_in": len(kept) + len(rejected),
        "records_out": len(kept),
        "started_at": 100,
        "stats": {"filters": stats or {}},
    }
    manifest = {"name": name, "config": {"name": name, "seed": seed, "filter": filters},
                "stages": stages}  # fmt: skip
    (run / "manifest.json").write_bytes(orjson.dumps(manifest))
    return run


@dataclass
class Server:
    url: str
    process: subprocess.Popen | None = None  # None: served in this process

    @property
    def token(self) -> str:
        return self.url.split("#token=", 1)[1]

    @property
    def origin(self) -> str:
        return self.url.split("/#", 1)[0]

    def request(
        self,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        token: str | None = "",
        origin: str | None = "",
        host: str | None = None,
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """(status, JSON body, headers); ``token``/``origin`` "" send the right ones,
        None sends none."""
        headers = {}
        if token is not None:
            headers["X-Review-Token"] = token or self.token
        if body is not None:
            headers["Content-Type"] = "application/json"
            if origin is not None:
                headers["Origin"] = origin or self.origin
        if host is not None:
            headers["Host"] = host
        data = orjson.dumps(body) if body is not None else None
        request = urllib.request.Request(self.origin + path, data=data, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, _json(answer.read()), dict(answer.headers)
        except urllib.error.HTTPError as error:
            return error.code, _json(error.read()), dict(error.headers)


def _json(raw: bytes) -> dict[str, Any]:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {"raw": raw.decode(errors="replace")}


@contextmanager
def review_server(run: Path, *args: str) -> Iterator[Server]:
    """`distillpipe review RUN --port 0 ...` in a subprocess; the URL it prints."""
    process = subprocess.Popen(
        [sys.executable, "-m", "distillpipe", "review", str(run), "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode().strip()
        if not line.startswith("http://127.0.0.1:"):
            process.kill()
            raise RuntimeError(f"no URL from distillpipe review: {process.stderr.read()!r}")
        yield Server(line, process)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


@contextmanager
def inprocess_server(run: Path, size: int = 50) -> Iterator[Server]:
    """The same server in a thread of this process: what most tests need, without the
    seconds a new interpreter takes to import the command line."""
    server = ReviewServer(run, draw_sample(run, size))
    sock = bind(0)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    task: list[asyncio.Task] = []

    def main() -> None:
        async def running() -> None:
            task.append(asyncio.current_task())
            await serve(server, sock, lambda url: ready.set())

        try:
            loop.run_until_complete(running())
        except asyncio.CancelledError:
            pass
        finally:
            loop.close()

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    assert ready.wait(30), "the review server did not start"
    try:
        yield Server(server.url())
    finally:
        loop.call_soon_threadsafe(task[0].cancel)
        thread.join(10)


def wait_until(check, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.05)
