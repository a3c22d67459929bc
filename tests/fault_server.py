"""A loopback server speaking the OpenAI and Anthropic wire formats, with faults on demand.

Endpoints: OpenAI ``/v1/chat/completions``, ``/v1/completions``, ``/v1/files``,
``/v1/files/{id}/content``, ``/v1/batches``, ``/v1/models`` (404 unless ``models``
is set: the entries it lists); Anthropic ``/v1/messages`` and
``/v1/messages/batches`` (+ ``/results``). Answers are deterministic echoes of
the last user message, with usage counts.

A fault hits the first ``times`` attempts of every distinct request body (so
every request succeeds in the end, and how often each was tried is counted):
``429`` (with Retry-After / retry-after-ms), ``500``, ``503``, ``drop`` (the
connection is cut), ``stall`` (no answer for ``stall`` seconds), ``malformed``
(200 with a broken JSON body), ``401`` (always), ``content_filter``;
``batch_item_failures`` fails every ``fail_every``-th item of a batch on its
first submission. Batches stay in progress until ``batch_delay`` seconds pass
or ``release_batches()`` is called.

Run it in a thread (``FaultServer().start()``, the tests) or as its own
process (``python tests/fault_server.py --port P --latency 0.1``, the benchmark).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import threading
import time
from collections import Counter
from typing import Any

import orjson
from aiohttp import web


class FaultServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, latency: float = 0.0) -> None:
        self.host, self.port, self.latency = host, port, latency
        self.fault: str | None = None
        self.times = 1
        self.retry_after: str | None = "0"
        self.stall = 5.0
        self.fail_every = 3
        self.batch_delay = 0.0
        self.batches_released = False
        self.attempts: Counter[str] = Counter()
        self.answered: Counter[str] = Counter()
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.batch_items_seen: Counter[str] = Counter()
        self.rate_limit_headers: dict[str, str] = {}
        self.received: list[dict[str, Any]] = []  # bodies answered by /v1/messages
        self.models: list[dict[str, Any]] | None = None  # what /v1/models lists
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    # -- control -------------------------------------------------------------

    def set_fault(self, fault: str | None, times: int = 1, **settings: Any) -> None:
        self.fault, self.times = fault, times
        for name, value in settings.items():
            setattr(self, name, value)

    def release_batches(self) -> None:
        self.batches_released = True

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def app(self) -> web.Application:
        app = web.Application(client_max_size=512 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self.chat_completions)
        app.router.add_get("/v1/models", self.list_models)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/v1/messages", self.messages)
        app.router.add_post("/v1/files", self.upload_file)
        app.router.add_get("/v1/files/{id}/content", self.file_content)
        app.router.add_post("/v1/batches", self.create_openai_batch)
        app.router.add_get("/v1/batches/{id}", self.get_openai_batch)
        app.router.add_post("/v1/messages/batches", self.create_anthropic_batch)
        app.router.add_get("/v1/messages/batches/{id}", self.get_anthropic_batch)
        app.router.add_get("/v1/messages/batches/{id}/results", self.anthropic_results)
        return app

    def start(self) -> FaultServer:
        ready = threading.Event()

        def serve() -> None:
            self._loop = asyncio.new_event_loop()
            self._runner = web.AppRunner(self.app(), access_log=None)
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, self.host, self.port, backlog=4096)
            self._loop.run_until_complete(site.start())
            self.port = self._runner.addresses[0][1]
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._runner.cleanup())
            self._loop.close()

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    # -- faults --------------------------------------------------------------

    async def _fault_for(self, request: web.Request, raw: bytes) -> web.StreamResponse | None:
        """The injected failure for this attempt, or None to answer normally."""
        identity = hashlib.sha256(raw).hexdigest()
        self.attempts[identity] += 1
        if self.latency:
            await asyncio.sleep(self.latency)
        if self.fault == "401":
            return _error(401, "invalid x-api-key", "authentication_error")
        if self.fault is None or self.attempts[identity] > self.times:
            return None
        if self.fault == "429":
            headers = {"Retry-After": self.retry_after} if self.retry_after is not None else {}
            return _error(429, "rate limited", "rate_limit_error", headers)
        if self.fault == "429ms":
            return _error(429, "rate limited", "rate_limit_error", {"retry-after-ms": "30"})
        if self.fault in ("500", "503"):
            return _error(int(self.fault), "overloaded", "api_error")
        if self.fault == "drop":
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=500)
        if self.fault == "stall":
            await asyncio.sleep(self.stall)
            return web.Response(status=504)  # the client gave up long ago
        if self.fault == "malformed":
            return web.Response(body=b'{"choices": [{"mess', content_type="application/json")
        if self.fault == "content_filter":
            return _error(400, "flagged by the content filter", "content_filter")
        if self.fault == "context_length":
            return _error(400, "maximum context length is 8 tokens", "context_length_exceeded")
        return None

    def _count_answer(self, raw: bytes) -> None:
        self.answered[hashlib.sha256(raw).hexdigest()] += 1

    # -- synchronous endpoints ----------------------------------------------

    async def list_models(self, request: web.Request) -> web.StreamResponse:
        if self.models is None:
            return web.Response(status=404)
        return _json({"object": "list", "data": self.models})

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        if (fault := await self._fault_for(request, raw)) is not None:
            return fault
        self._count_answer(raw)
        return _json(openai_chat_answer(orjson.loads(raw)), self.rate_limit_headers)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        if (fault := await self._fault_for(request, raw)) is not None:
            return fault
        self._count_answer(raw)
        body = orjson.loads(raw)
        text = f"echo: {body['prompt'][-40:]}"
        return _json(
            {
                "id": "cmpl-1",
                "object": "text_completion",
                "model": body["model"],
                "choices": [{"index": 0, "text": text, "finish_reason": "stop"}],
                "usage": _usage(body["prompt"], text),
            },
            self.rate_limit_headers,
        )

    async def messages(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        if request.headers.get("anthropic-version") is None:
            return _error(400, "anthropic-version header is required", "invalid_request_error")
        if (fault := await self._fault_for(request, raw)) is not None:
            return fault
        self._count_answer(raw)
        body = orjson.loads(raw)
        self.received.append({"headers": dict(request.headers), "body": body})
        if self.fault == "refusal":
            answer = {**anthropic_answer(body), "stop_reason": "refusal", "content": []}
            return _json(answer)
        return _json(anthropic_answer(body), self.rate_limit_headers)

    # -- OpenAI files and batches -------------------------------------------

    async def upload_file(self, request: web.Request) -> web.Response:
        form = await request.post()
        upload = form["file"]
        content = upload.file.read() if hasattr(upload, "file") else bytes(upload)
        file_id = f"file-{next(self._ids)}"
        self.files[file_id] = content
        return _json(
            {
                "id": file_id,
                "object": "file",
                "bytes": len(content),
                "created_at": int(time.time()),
                "filename": getattr(upload, "filename", "input.jsonl"),
                "purpose": form.get("purpose", "batch"),
                "status": "processed",
            }
        )

    async def file_content(self, request: web.Request) -> web.Response:
        file_id = request.match_info["id"]
        if file_id not in self.files:
            return _error(404, f"no file {file_id}", "not_found_error")
        return web.Response(body=self.files[file_id], content_type="application/octet-stream")

    async def create_openai_batch(self, request: web.Request) -> web.Response:
        body = await request.json()
        if self.fault == "401":
            return _error(401, "invalid api key", "authentication_error")
        lines = self.files[body["input_file_id"]].splitlines()
        items = [orjson.loads(line) for line in lines if line.strip()]
        batch_id = f"batch_{next(self._ids)}"
        self.batches[batch_id] = {
            "kind": "openai",
            "items": items,
            "created": time.monotonic(),
            "request": body,
        }
        return _json(self._openai_batch_view(batch_id))

    async def get_openai_batch(self, request: web.Request) -> web.Response:
        batch_id = request.match_info["id"]
        if batch_id not in self.batches:
            return _error(404, f"no batch {batch_id}", "not_found_error")
        return _json(self._openai_batch_view(batch_id))

    def _is_done(self, batch: dict[str, Any]) -> bool:
        if self.batch_delay < 0:
            return self.batches_released
        return self.batches_released or time.monotonic() - batch["created"] >= self.batch_delay

    def _openai_batch_view(self, batch_id: str) -> dict[str, Any]:
        batch = self.batches[batch_id]
        total = len(batch["items"])
        view: dict[str, Any] = {
            "id": batch_id,
            "object": "batch",
            "endpoint": batch["request"]["endpoint"],
            "input_file_id": batch["request"]["input_file_id"],
            "completion_window": batch["request"]["completion_window"],
            "created_at": int(time.time()),
            "status": "in_progress",
            "request_counts": {"total": total, "completed": 0, "failed": 0},
        }
        if self._is_done(batch):
            if "output_file_id" not in batch:
                self._finish_openai_batch(batch)
            view.update(
                status="completed",
                output_file_id=batch["output_file_id"],
                error_file_id=batch["error_file_id"],
                request_counts=batch["counts"],
            )
        return view

    def _finish_openai_batch(self, batch: dict[str, Any]) -> None:
        output, errors = [], []
        for item in batch["items"]:
            if self._item_fails(item["custom_id"]):
                errors.append(
                    {
                        "id": f"req_{next(self._ids)}",
                        "custom_id": item["custom_id"],
                        "response": None,
                        "error": {"code": "batch_expired", "message": "not finished in time"},
                    }
                )
                continue
            answer = openai_chat_answer(item["body"])
            output.append(
                {
                    "id": f"req_{next(self._ids)}",
                    "custom_id": item["custom_id"],
                    "response": {"status_code": 200, "request_id": "r", "body": answer},
                    "error": None,
                }
            )
        batch["output_file_id"] = self._store_jsonl(output)
        batch["error_file_id"] = self._store_jsonl(errors) if errors else None
        batch["counts"] = {"total": len(batch["items"]), "completed": len(output), "failed": 0}

    def _item_fails(self, custom_id: str) -> bool:
        self.batch_items_seen[custom_id] += 1
        if self.fault != "batch_item_failures" or self.batch_items_seen[custom_id] > 1:
            return False
        return int(hashlib.sha256(custom_id.encode()).hexdigest(), 16) % self.fail_every == 0

    def _store_jsonl(self, rows: list[dict[str, Any]]) -> str:
        file_id = f"file-{next(self._ids)}"
        self.files[file_id] = b"".join(orjson.dumps(row) + b"\n" for row in rows)
        return file_id

    # -- Anthropic message batches ------------------------------------------

    async def create_anthropic_batch(self, request: web.Request) -> web.Response:
        if self.fault == "401":
            return _error(401, "invalid x-api-key", "authentication_error")
        body = await request.json()
        batch_id = f"msgbatch_{next(self._ids)}"
        self.batches[batch_id] = {
            "kind": "anthropic",
            "items": body["requests"],
            "created": time.monotonic(),
        }
        return _json(self._anthropic_batch_view(batch_id, request))

    async def get_anthropic_batch(self, request: web.Request) -> web.Response:
        batch_id = request.match_info["id"]
        if batch_id not in self.batches:
            return _error(404, f"no batch {batch_id}", "not_found_error")
        return _json(self._anthropic_batch_view(batch_id, request))

    def _anthropic_batch_view(self, batch_id: str, request: web.Request) -> dict[str, Any]:
        batch = self.batches[batch_id]
        done = self._is_done(batch)
        counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        if done and "results" not in batch:
            batch["results"] = [self._anthropic_result(item) for item in batch["items"]]
        if done:
            for row in batch["results"]:
                counts[row["result"]["type"]] += 1
        else:
            counts["processing"] = len(batch["items"])
        stamp = "2026-01-01T00:00:00Z"
        return {
            "id": batch_id,
            "type": "message_batch",
            "processing_status": "ended" if done else "in_progress",
            "request_counts": counts,
            "created_at": stamp,
            "expires_at": stamp,
            "ended_at": stamp if done else None,
            "archived_at": None,
            "cancel_initiated_at": None,
            "results_url": f"{self.url}/v1/messages/batches/{batch_id}/results" if done else None,
        }

    def _anthropic_result(self, item: dict[str, Any]) -> dict[str, Any]:
        if self._item_fails(item["custom_id"]):
            error = {"type": "error", "error": {"type": "api_error", "message": "overloaded"}}
            return {"custom_id": item["custom_id"], "result": {"type": "errored", "error": error}}
        message = anthropic_answer(item["params"])
        return {"custom_id": item["custom_id"], "result": {"type": "succeeded", "message": message}}

    async def anthropic_results(self, request: web.Request) -> web.Response:
        batch = self.batches[request.match_info["id"]]
        body = b"".join(orjson.dumps(row) + b"\n" for row in batch["results"])
        return web.Response(body=body, content_type="application/binary")


def openai_chat_answer(body: dict[str, Any]) -> dict[str, Any]:
    prompt = body["messages"][-1]["content"]
    text = f"echo: {prompt[-40:]}"
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": body["model"],
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": _usage(" ".join(m["content"] for m in body["messages"]), text),
    }


def anthropic_answer(body: dict[str, Any]) -> dict[str, Any]:
    prompt = body["messages"][-1]["content"]
    text = f"echo: {prompt[-40:]}"
    usage = _usage(body.get("system", "") + prompt, text)
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": usage["prompt_tokens"],
            "output_tokens": usage["completion_tokens"],
        },
    }


def _usage(prompt: str, text: str) -> dict[str, int]:
    prompt_tokens, completion_tokens = len(prompt.split()) + 1, len(text.split())
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _json(data: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(data), content_type="application/json", headers=headers)


def _error(
    status: int, message: str, kind: str, headers: dict[str, str] | None = None
) -> web.Response:
    body = {"error": {"message": message, "type": kind, "code": kind}}
    return _json(body, headers) if status == 200 else _status(status, body, headers)


def _status(status: int, body: Any, headers: dict[str, str] | None) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/json", headers=headers
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args()
    server = FaultServer(port=args.port, latency=args.latency)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    web.run_app(
        server.app(),
        host="127.0.0.1",
        port=args.port,
        access_log=None,
        print=None,
        backlog=4096,
        reuse_port=True,  # several processes may serve one port (the benchmark)
    )


if __name__ == "__main__":
    main()
