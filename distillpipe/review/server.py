"""The review page's server (aiohttp): 127.0.0.1 only, a token, the Origin, a strict CSP.

The printed URL carries a random token (``secrets.token_urlsafe``) in its fragment,
which the browser never sends in a request line or a Referer; the page's script
sends it in the ``X-Review-Token`` header. Every data request needs the token,
every write also an ``Origin`` equal to the page's own and a JSON body; every
request a ``Host`` naming 127.0.0.1 or localhost at this port (a page on another
site that rebinds its DNS name to 127.0.0.1 is refused). The server serves its
three static files and the sample, nothing else. A decision is answered only
after ``append_decisions`` fsynced it.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from pydantic import ValidationError

from distillpipe.review.decisions import (
    DECISIONS_FILE,
    REASONS,
    Decision,
    append_decisions,
    latest_decisions,
)

STATIC = Path(__file__).parent / "static"
ASSETS = {  # URL path -> (file, content type): everything the server serves besides the API
    "/": ("index.html", "text/html"),
    "/review.js": ("review.js", "text/javascript"),
    "/review.css": ("review.css", "text/css"),
}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'none'; font-src 'none'; object-src 'none'; media-src 'none'; "
    "frame-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
TOKEN_HEADER = "X-Review-Token"
MAX_BODY = 1 << 20


class ReviewServer:
    """Serves one run's sample and appends the decisions made on it."""

    def __init__(
        self,
        run_dir: Path,
        sample: dict[str, Any],
        token: str | None = None,
        reviewer: str | None = None,
    ) -> None:
        self.decisions_path = run_dir / DECISIONS_FILE
        self.reviewer = reviewer
        self.sample = sample
        self.ids = {item["id"] for item in sample["items"]}
        self.token = token or secrets.token_urlsafe(32)
        self.port = 0

    # -- the checks every request passes -------------------------------------------------
    def _origins(self) -> set[str]:
        return {f"http://127.0.0.1:{self.port}", f"http://localhost:{self.port}"}

    def _hosts(self) -> set[str]:
        return {f"127.0.0.1:{self.port}", f"localhost:{self.port}"}

    def _refuse(self, request: web.Request, *, write: bool) -> web.Response | None:
        if request.host not in self._hosts():
            return _error(421, "unknown Host")
        given = request.headers.get(TOKEN_HEADER, "")
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return _error(403, "missing or wrong token")
        if write:
            if request.headers.get("Origin") not in self._origins():
                return _error(403, "writes are accepted from this page's origin only")
            if request.content_type != "application/json":
                return _error(415, "send JSON")
        return None

    @web.middleware
    async def _headers(self, request: web.Request, handler: Callable[..., Any]) -> Any:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            response = _error(exc.status, exc.reason)
        response.headers.update(HEADERS)
        return response

    # -- handlers ------------------------------------------------------------------------
    async def asset(self, request: web.Request) -> web.Response:
        if request.host not in self._hosts():
            return _error(421, "unknown Host")
        name, content_type = ASSETS[request.path]
        body = (STATIC / name).read_bytes()
        return web.Response(body=body, content_type=content_type, charset="utf-8")

    async def get_sample(self, request: web.Request) -> web.Response:
        if refused := self._refuse(request, write=False):
            return refused
        decisions = await asyncio.to_thread(latest_decisions, self.decisions_path)
        mine = {i: d.model_dump(exclude_none=True) for i, d in decisions.items() if i in self.ids}
        return _json({**self.sample, "reasons": list(REASONS), "decisions": mine})

    async def post_decision(self, request: web.Request) -> web.Response:
        if refused := self._refuse(request, write=True):
            return refused
        body = await request.read()
        try:
            stamp = {"source": "page", "reviewer": self.reviewer}
            decision = Decision.model_validate({**orjson.loads(body), **stamp})
        except (orjson.JSONDecodeError, TypeError):
            return _error(400, "the body is not a JSON object")
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            return _error(400, f"{where}: {first['msg']}" if where else first["msg"])
        if decision.id not in self.ids:
            return _error(404, "no such record in this review's sample")
        await asyncio.to_thread(append_decisions, self.decisions_path, [decision])
        return _json({"saved": decision.model_dump(exclude_none=True)})

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._headers], client_max_size=MAX_BODY)
        for path in ASSETS:
            app.router.add_get(path, self.asset)
        app.router.add_get("/api/sample", self.get_sample)
        app.router.add_post("/api/decisions", self.post_decision)
        return app

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/#token={self.token}"


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(value), status=status, content_type="application/json")


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


def bind(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1 (never another interface); port 0: any free port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    return sock


async def serve(server: ReviewServer, sock: socket.socket, on_ready: Callable[[str], None]) -> None:
    """Serve until cancelled (Ctrl-C); ``on_ready`` gets the URL once it answers."""
    server.port = sock.getsockname()[1]
    runner = web.AppRunner(server.app(), access_log=None)
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
        on_ready(server.url())
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
