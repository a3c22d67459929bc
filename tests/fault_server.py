"""A loopback server speaking the OpenAI and Anthropic wire formats, with faults on demand.

Endpoints: OpenAI ``/v1/chat/completions``, ``/v1/completions``, ``/v1/files``,
``/v1/files/{id}/content``, ``/v1/batches`` (create, retrieve, list),
``/v1/models`` (404 unless ``models`` is set: the entries it lists); Anthropic
``/v1/messages`` and ``/v1/messages/batches`` (create, retrieve, list,
``/results``). Answers are deterministic echoes of the last user message, with
usage counts. Batch lists are newest first, in pages of at most
``batch_list_limit``.

A scripted model: ``answer`` (given a chat request's body) replaces the echo
with the text it returns, when it returns one.

A fault hits the first ``times`` attempts of every distinct request body (so
every request succeeds in the end, and how often each was tried is counted):
``429`` (with Retry-After / retry-after-ms), ``500``, ``503``, ``drop`` (the
connection is cut), ``stall`` (no answer for ``stall`` seconds), ``malformed``
(200 with a broken JSON body), ``401`` (always), ``content_filter``;
``batch_item_failures`` fails every ``fail_every``-th item of a batch on its
first submission; ``batch_answer_lost`` registers the first ``times`` batches
submitted but answers their create requests with a 503. Batches stay in
progress until ``batch_delay`` seconds pass or ``release_batches()`` is called.
``submit_hold = "after"`` registers a submitted batch, then holds the answer
while the setting stays (a client killed then paid for a batch it never heard
of); ``"before"`` holds the request before registering it and drops it if the
client left meanwhile. ``batch_submits`` counts the create requests received,
``held`` those held now.

Structured outputs: an OpenAI ``response_format`` of type ``json_schema`` with
``strict`` is checked as OpenAI checks it (every object closed by
``additionalProperties: false`` and every property required), and an Anthropic
request that forces a tool (``tool_choice: {type: tool}``) is answered with a
``tool_use`` block whose input ``tool_input`` gives (given the body), refused
400 while thinking, as the API refuses it.

Like the real APIs, it checks what reasoning models are sent (``check_bodies``,
on by default): a parameter the o-series or gpt-5 reject (``max_tokens``,
temperature or top_p other than 1, penalties, logprobs, stop, an unknown
``reasoning_effort``) or one Anthropic's Messages API rejects with thinking on
(temperature other than 1, top_k, top_p below 0.95, a budget under 1024 or
not below ``max_tokens``; temperature with top_p on the newest Claude models)
is answered 400 with the API's message, and the body kept in ``rejected``.
These rules are written out here from the providers' documented errors, apart
from the client's model_rules.yaml, so that the tests check one against the
other. Reasoning models answer with reasoning tokens in their usage.

A reasoning teacher on demand: ``reasoning_shape`` makes every answer carry the
trace ``TRACE`` in one wire shape (``reasoning_content``, ``reasoning``,
``inline``: ``<think>…</think>`` before the answer, ``inline_closing``: only the
closing tag, as when the prompt opened the block; ``redacted_thinking``: an
Anthropic encrypted block), and ``needs_tokens`` makes a request whose token
limit is below it stop with ``finish_reason: length`` inside its trace (a
reasoning model that ran out of budget while thinking).

Run it in a thread (``FaultServer().start()``, the tests) or as its own
process (``python tests/fault_server.py --port P --latency 0.1``, the benchmark),
which also lists its models on ``/v1/models``, so distillpipe can launch it as
a managed server. ``--api-key K`` makes it answer only ``Authorization: Bearer
K`` (as ``vllm serve --api-key`` does), and like vLLM it prints its arguments
when it starts.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web


class FaultServer:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
        api_key: str | None = None,
    ) -> None:
        self.host, self.port, self.latency, self.api_key = host, port, latency, api_key
        self.fault: str | None = None
        self.times = 1
        self.retry_after: str | None = "0"
        self.stall = 5.0
        self.fail_every = 3
        self.batch_delay = 0.0
        self.batches_released = False
        self.submit_hold: str | None = None
        self.batch_submits = 0
        self.held = 0
        self.batch_list_limit = 100
        self._answers_lost = 0
        self.attempts: Counter[str] = Counter()
        self.answered: Counter[str] = Counter()
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.batch_items_seen: Counter[str] = Counter()
        self.rate_limit_headers: dict[str, str] = {}
        self.check_bodies = True
        self.received: list[dict[str, Any]] = []  # bodies answered by the chat endpoints
        self.rejected: list[dict[str, Any]] = []  # bodies answered 400 by check_bodies
        self.answer: Callable[[dict[str, Any]], str | None] | None = None  # chat replies
        # a forced tool call's input (Anthropic); default: the echo as {"echo": ...}
        self.tool_input: Callable[[dict[str, Any]], Any] | None = None
        self.models: list[dict[str, Any]] | None = None  # what /v1/models lists
        self.reasoning_shape: str | None = None  # see the module's docstring
        self.needs_tokens: int | None = None  # below it an answer is cut off while thinking
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

    def add_batch(self, kind: str, custom_ids: list[str]) -> str:
        """Register a batch as another client of the same account would submit it."""
        body = {"model": "other-model", "messages": [{"role": "user", "content": "hello"}]}
        if kind == "openai":
            items = [{"custom_id": cid, "method": "POST", "body": body} for cid in custom_ids]
            request = {"endpoint": "/v1/chat/completions", "completion_window": "24h"}
            request["input_file_id"] = self._store_jsonl(items)
        else:
            items = [{"custom_id": cid, "params": {**body, "max_tokens": 8}} for cid in custom_ids]
            request = {}
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(self._register(kind, items, request), self._loop)
        return future.result(10)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def app(self) -> web.Application:
        middlewares = [self._auth] if self.api_key else []
        app = web.Application(client_max_size=512 * 1024 * 1024, middlewares=middlewares)
        app.router.add_post("/v1/chat/completions", self.chat_completions)
        app.router.add_get("/v1/models", self.list_models)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/v1/messages", self.messages)
        app.router.add_post("/v1/files", self.upload_file)
        app.router.add_get("/v1/files/{id}/content", self.file_content)
        app.router.add_post("/v1/batches", self.create_openai_batch)
        app.router.add_get("/v1/batches", self.list_openai_batches)
        app.router.add_get("/v1/batches/{id}", self.get_openai_batch)
        app.router.add_post("/v1/messages/batches", self.create_anthropic_batch)
        app.router.add_get("/v1/messages/batches", self.list_anthropic_batches)
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
        self.submit_hold = None  # a held answer would keep the shutdown waiting
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        authorized = request.headers.get("Authorization") == f"Bearer {self.api_key}"
        if request.path.startswith("/v1") and not authorized:  # vLLM guards /v1 only
            return _error(401, "invalid api key", "authentication_error")
        return await handler(request)

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

    def _rejection(self, body: dict[str, Any], check: Any) -> web.Response | None:
        """400, as the real API answers, for a parameter the model rejects."""
        why = check(body) if self.check_bodies else None
        if why is None:
            return None
        self.rejected.append(body)
        return _error(400, why, "invalid_request_error")

    async def list_models(self, request: web.Request) -> web.StreamResponse:
        if self.models is None:
            return web.Response(status=404)
        return _json({"object": "list", "data": self.models})

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body = orjson.loads(raw)
        if (rejection := self._rejection(body, openai_rejection)) is not None:
            return rejection
        if (fault := await self._fault_for(request, raw)) is not None:
            return fault
        self._count_answer(raw)
        self.received.append({"headers": dict(request.headers), "body": body})
        answer = openai_chat_answer(body)
        if self.answer is not None and (text := self.answer(body)) is not None:
            answer["choices"][0]["message"]["content"] = text
        if self.reasoning_shape is not None:
            choice = answer["choices"][0]
            limit = body.get("max_completion_tokens", body.get("max_tokens"))
            cut = self.needs_tokens is not None and limit < self.needs_tokens
            choice["message"] = with_trace(choice["message"], self.reasoning_shape, cut)
            if cut:
                choice["finish_reason"] = "length"
        return _json(answer, self.rate_limit_headers)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body = orjson.loads(raw)
        if (rejection := self._rejection(body, completions_rejection)) is not None:
            return rejection
        if (fault := await self._fault_for(request, raw)) is not None:
            return fault
        self._count_answer(raw)
        text = f"echo: {body['prompt'][-40:]}"
        finish_reason = "stop"
        if self.reasoning_shape is not None:
            cut = self.needs_tokens is not None and body.get("max_tokens") < self.needs_tokens
            text = with_trace({"content": text}, self.reasoning_shape, cut)["content"]
            finish_reason = "length" if cut else finish_reason
        return _json(
            {
                "id": "cmpl-1",
                "object": "text_completion",
                "model": body["model"],
                "choices": [{"index": 0, "text": text, "finish_reason": finish_reason}],
                "usage": _usage(body["prompt"], text),
            },
            self.rate_limit_headers,
        )

    async def messages(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        if request.headers.get("anthropic-version") is None:
            return _error(400, "anthropic-version header is required", "invalid_request_error")
        body = orjson.loads(raw)
        if (rejection := self._rejection(body, anthropic_rejection)) is not None:
            return rejection
        if (fault := await self._fault_for(request, raw)) is not None:
            return fault
        self._count_answer(raw)
        self.received.append({"headers": dict(request.headers), "body": body})
        if self.fault == "refusal":
            answer = {**anthropic_answer(body), "stop_reason": "refusal", "content": []}
            return _json(answer)
        answer = anthropic_answer(body, self.tool_input)
        if self.reasoning_shape == "redacted_thinking":
            answer["content"] = [
                {"type": "redacted_thinking", "data": REDACTED_DATA},
                *(block for block in answer["content"] if block["type"] == "text"),
            ]
        if self.needs_tokens is not None and body["max_tokens"] < self.needs_tokens:
            answer["content"] = [b for b in answer["content"] if b["type"] != "text"]
            answer["stop_reason"] = "max_tokens"
        return _json(answer, self.rate_limit_headers)

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
        self.batch_submits += 1
        if self.fault == "401":
            return _error(401, "invalid api key", "authentication_error")
        if not await self._hold("before", request):
            return _error(400, "the client left", "api_error")
        lines = self.files[body["input_file_id"]].splitlines()
        items = [orjson.loads(line) for line in lines if line.strip()]
        batch_id = await self._register("openai", items, body)
        if (lost := await self._lose_or_hold_answer(request)) is not None:
            return lost
        return _json(self._openai_batch_view(batch_id))

    async def list_openai_batches(self, request: web.Request) -> web.Response:
        page, has_more = self._list_page("openai", request.query.get("after"), None, request)
        return _json(
            {
                "object": "list",
                "data": [self._openai_batch_view(batch_id) for batch_id in page],
                "first_id": page[0] if page else None,
                "last_id": page[-1] if page else None,
                "has_more": has_more,
            }
        )

    async def _register(self, kind: str, items: list[Any], request: dict[str, Any]) -> str:
        batch_id = f"{'batch' if kind == 'openai' else 'msgbatch'}_{next(self._ids)}"
        self.batches[batch_id] = {
            "kind": kind,
            "items": items,
            "created": time.monotonic(),
            "created_at": time.time(),
            "request": request,
        }
        return batch_id

    async def _hold(self, stage: str, request: web.Request) -> bool:
        """Hold a batch-create request while ``submit_hold`` is ``stage`` (``held`` counts
        those held now); False if its client left."""

        def client_left() -> bool:
            return request.transport is None or request.transport.is_closing()

        if self.submit_hold != stage:
            return not client_left()
        self.held += 1
        try:
            while self.submit_hold == stage and not client_left():
                await asyncio.sleep(0.02)
            return not client_left()
        finally:
            self.held -= 1

    async def _lose_or_hold_answer(self, request: web.Request) -> web.Response | None:
        """After a batch was registered: the 503 that replaces its answer, or None."""
        if self.fault == "batch_answer_lost" and self._answers_lost < self.times:
            self._answers_lost += 1
            return _error(503, "overloaded", "api_error")
        await self._hold("after", request)
        return None

    def _list_page(
        self, kind: str, after: str | None, before: str | None, request: web.Request
    ) -> tuple[list[str], bool]:
        """One page of the ``kind`` batches, newest first: after ``after`` (older), or
        before ``before`` (newer)."""
        ids = [batch_id for batch_id, b in self.batches.items() if b["kind"] == kind][::-1]
        ids.sort(key=lambda batch_id: -self.batches[batch_id]["created_at"])
        limit = min(int(request.query.get("limit", 20)), self.batch_list_limit)
        if before is not None:
            older_from = ids.index(before)
            return ids[max(0, older_from - limit) : older_from], older_from > limit
        start = ids.index(after) + 1 if after is not None else 0
        return ids[start : start + limit], start + limit < len(ids)

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
            "created_at": int(batch["created_at"]),
            "metadata": batch["request"].get("metadata"),
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
            why = openai_rejection(item["body"]) if self.check_bodies else None
            if why is not None:
                self.rejected.append(item["body"])
                body = {"error": {"message": why, "type": "invalid_request_error"}}
                output.append(
                    {
                        "id": f"req_{next(self._ids)}",
                        "custom_id": item["custom_id"],
                        "response": {"status_code": 400, "request_id": "r", "body": body},
                        "error": None,
                    }
                )
                continue
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
        self.batch_submits += 1
        if self.fault == "401":
            return _error(401, "invalid x-api-key", "authentication_error")
        body = await request.json()
        if not await self._hold("before", request):
            return _error(400, "the client left", "api_error")
        batch_id = await self._register("anthropic", body["requests"], {})
        if (lost := await self._lose_or_hold_answer(request)) is not None:
            return lost
        return _json(self._anthropic_batch_view(batch_id, request))

    async def list_anthropic_batches(self, request: web.Request) -> web.Response:
        query = request.query
        page, has_more = self._list_page(
            "anthropic", query.get("after_id"), query.get("before_id"), request
        )
        return _json(
            {
                "data": [self._anthropic_batch_view(batch_id, request) for batch_id in page],
                "first_id": page[0] if page else None,
                "last_id": page[-1] if page else None,
                "has_more": has_more,
            }
        )

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
        created_at = datetime.fromtimestamp(batch["created_at"], UTC)
        return {
            "id": batch_id,
            "type": "message_batch",
            "processing_status": "ended" if done else "in_progress",
            "request_counts": counts,
            "created_at": created_at.isoformat().replace("+00:00", "Z"),
            "expires_at": stamp,
            "ended_at": stamp if done else None,
            "archived_at": None,
            "cancel_initiated_at": None,
            "results_url": f"{self.url}/v1/messages/batches/{batch_id}/results" if done else None,
        }

    def _anthropic_result(self, item: dict[str, Any]) -> dict[str, Any]:
        why = anthropic_rejection(item["params"]) if self.check_bodies else None
        if why is not None:
            self.rejected.append(item["params"])
            error = {"type": "error", "error": {"type": "invalid_request_error", "message": why}}
            return {"custom_id": item["custom_id"], "result": {"type": "errored", "error": error}}
        if self._item_fails(item["custom_id"]):
            error = {"type": "error", "error": {"type": "api_error", "message": "overloaded"}}
            return {"custom_id": item["custom_id"], "result": {"type": "errored", "error": error}}
        message = anthropic_answer(item["params"], self.tool_input)
        return {"custom_id": item["custom_id"], "result": {"type": "succeeded", "message": message}}

    async def anthropic_results(self, request: web.Request) -> web.Response:
        batch = self.batches[request.match_info["id"]]
        body = b"".join(orjson.dumps(row) + b"\n" for row in batch["results"])
        return web.Response(body=body, content_type="application/binary")


_OPENAI_REASONING = ("o1", "o3", "o4", "gpt-5")
_EFFORTS = {"o1-mini": (), "o1-preview": (), "gpt-5.1": ("none", "low", "medium", "high")}
_GPT5_EFFORTS = ("minimal", "low", "medium", "high")
REASONING_TOKENS = 24  # what a reasoning model's answer says it spent thinking


def _effort_values(model: str) -> tuple[str, ...]:
    for prefix in sorted(_EFFORTS, key=len, reverse=True):
        if model.startswith(prefix):
            return _EFFORTS[prefix]
    return _GPT5_EFFORTS if model.startswith("gpt-5") else ("low", "medium", "high")


def openai_rejection(body: dict[str, Any]) -> str | None:
    """The 400 message the Chat Completions API gives this body, or None."""
    model = body["model"]
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        named = response_format["json_schema"]
        if named.get("strict") and (why := strict_schema_problem(named["schema"])) is not None:
            return f"Invalid schema for response_format '{named['name']}': {why}"
    if not model.startswith(_OPENAI_REASONING):
        if "reasoning_effort" in body:
            return "Unrecognized request argument supplied: reasoning_effort"
        return None
    if "max_tokens" in body:
        return (
            "Unsupported parameter: 'max_tokens' is not supported with this model. "
            "Use 'max_completion_tokens' instead."
        )
    for knob in ("temperature", "top_p"):
        if knob in body and body[knob] != 1:
            return (
                f"Unsupported value: '{knob}' does not support {body[knob]} with this model. "
                "Only the default (1) value is supported."
            )
    for name in ("presence_penalty", "frequency_penalty", "logprobs", "top_logprobs", "stop"):
        if name in body:
            return f"Unsupported parameter: '{name}' is not supported with this model."
    effort = body.get("reasoning_effort")
    if effort is not None and effort not in _effort_values(model):
        return f"Unsupported value: 'reasoning_effort' does not support {effort!r} with this model."
    return None


def strict_schema_problem(schema: dict[str, Any], context: tuple[str, ...] = ()) -> str | None:
    """What OpenAI's strict mode finds wrong with a schema: objects must be closed and
    require every property."""
    if schema.get("type") == "object":
        if schema.get("additionalProperties") is not False:
            return (
                f"In context={context}, 'additionalProperties' is required to be supplied "
                "and to be false."
            )
        properties = schema.get("properties") or {}
        missing = [name for name in properties if name not in (schema.get("required") or [])]
        if missing:
            return (
                f"In context={context}, 'required' is required to be supplied and to be an "
                f"array including every key in properties. Missing '{missing[0]}'."
            )
        for name, child in properties.items():
            if (why := strict_schema_problem(child, (*context, "properties", name))) is not None:
                return why
    if schema.get("type") == "array" and isinstance(schema.get("items"), dict):
        return strict_schema_problem(schema["items"], (*context, "items"))
    return None


def completions_rejection(body: dict[str, Any]) -> str | None:
    if body["model"].startswith(_OPENAI_REASONING):
        return "This is a chat model and not supported in the v1/completions endpoint."
    return None


_ANTHROPIC_THINKING = ("claude-3-7-sonnet", "claude-sonnet-4", "claude-opus-4", "claude-haiku-4-5")
_ANTHROPIC_ONE_KNOB = (
    "claude-sonnet-4-5",
    "claude-sonnet-4-6",
    "claude-opus-4-1",
    "claude-opus-4-5",
    "claude-opus-4-6",
    "claude-haiku-4-5",
)


def anthropic_rejection(body: dict[str, Any]) -> str | None:
    """The 400 message the Messages API gives this body, or None."""
    model, thinking = body["model"], body.get("thinking")
    if model.startswith(_ANTHROPIC_ONE_KNOB) and "temperature" in body and "top_p" in body:
        return "`temperature` and `top_p` cannot both be specified for this model."
    if thinking is None:
        return None
    if (body.get("tool_choice") or {}).get("type") in ("tool", "any"):
        return "Thinking may not be enabled when tool_choice forces tool use."
    if not model.startswith(_ANTHROPIC_THINKING):
        return f"thinking is not supported for {model}"
    budget = thinking.get("budget_tokens", 0)
    if thinking.get("type") != "enabled" or budget < 1024:
        return "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
    if budget >= body["max_tokens"]:
        return "`max_tokens` must be greater than `thinking.budget_tokens`"
    if body.get("temperature", 1) != 1:
        return "`temperature` may only be set to 1 when thinking is enabled."
    if "top_k" in body:
        return "`top_k` must be unset when thinking is enabled."
    if not 0.95 <= body.get("top_p", 1) <= 1:
        return "`top_p` must be set to a value between 0.95 and 1 when thinking is enabled."
    return None


def openai_chat_answer(body: dict[str, Any]) -> dict[str, Any]:
    prompt = body["messages"][-1]["content"]
    text = f"echo: {prompt[-40:]}"
    usage = _usage(" ".join(m["content"] for m in body["messages"]), text)
    if body["model"].startswith(_OPENAI_REASONING):  # billed as output, hidden from the text
        usage["completion_tokens"] += REASONING_TOKENS
        usage["total_tokens"] += REASONING_TOKENS
        usage["completion_tokens_details"] = {"reasoning_tokens": REASONING_TOKENS}
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
        "usage": usage,
    }


THINKING = "The user wants the echo of the last words, so I repeat them as they are."
TRACE = "First I read the request. Then I echo its last words back."
REDACTED_DATA = "ZW5jcnlwdGVkIHRoaW5raW5n"


def with_trace(message: dict[str, Any], shape: str, cut: bool) -> dict[str, Any]:
    """An assistant message carrying ``TRACE`` in one wire shape; ``cut``: stopped at its
    token limit while thinking (half the trace, no answer)."""
    trace = TRACE[: len(TRACE) // 2] if cut else TRACE
    answer = "" if cut else message["content"]
    if shape in ("reasoning_content", "reasoning"):
        return {**message, "content": answer or None, shape: trace}
    if shape == "inline":
        closing = "" if cut else "\n</think>\n\n"
        return {**message, "content": f"<think>\n{trace}{closing}{answer}"}
    if shape == "inline_closing":
        closing = "" if cut else "\n</think>\n\n"
        return {**message, "content": f"{trace}{closing}{answer}"}
    raise ValueError(f"unknown reasoning shape {shape!r}")


def anthropic_answer(
    body: dict[str, Any], tool_input: Callable[[dict[str, Any]], Any] | None = None
) -> dict[str, Any]:
    prompt = body["messages"][-1]["content"]
    text = f"echo: {prompt[-40:]}"
    usage = _usage(body.get("system", "") + prompt, text)
    content: list[dict[str, Any]] = [{"type": "text", "text": text}]
    forced = body.get("tool_choice") or {}
    if forced.get("type") == "tool":  # the forced call is the whole answer
        given = tool_input(body) if tool_input is not None else {"echo": prompt[-40:]}
        content = [{"type": "tool_use", "id": "toolu_1", "name": forced["name"], "input": given}]
    output_tokens = usage["completion_tokens"]
    if body.get("thinking"):  # the thinking is billed in output_tokens, as the API does
        content.insert(0, {"type": "thinking", "thinking": THINKING, "signature": "c2ln"})
        output_tokens += len(THINKING.split())
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": content,
        "stop_reason": "tool_use" if forced.get("type") == "tool" else "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": usage["prompt_tokens"], "output_tokens": output_tokens},
    }


def _usage(prompt: str, text: str) -> dict[str, Any]:
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
    parser.add_argument("--api-key", default=None)
    args = parser.parse_args()
    print(f"fault server args: {vars(args)}", flush=True)
    server = FaultServer(port=args.port, latency=args.latency, api_key=args.api_key)
    server.models = [{"id": "fault-server", "object": "model"}]  # so it can be a managed server
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
