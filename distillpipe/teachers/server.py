"""Start, health-check and stop a local OpenAI-compatible server for the openai backend.

``teacher: {backend: openai, launch: {command: [...]}}`` makes distillpipe run
the server itself: ``vllm serve``, llama.cpp's ``python -m llama_cpp.server``,
SGLang or TGI, from a command template with ``{model}``, ``{host}``, ``{port}``
and ``{python}`` placeholders. If ``base_url`` (or ``launch.port``) already
answers ``/v1/models``, that server is reused and left running. Otherwise the
command starts on a free port (or the one asked for), its output goes to a log
file in the run directory, and distillpipe waits for ``/health`` (a 404 counts
as "no such endpoint") and ``/v1/models``. The server is stopped with its whole
process group on exit, on Ctrl-C and on error; on Linux it also gets SIGTERM if
distillpipe itself is killed. A server that dies is reported with its log tail.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import signal
import socket
import string
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, TypeVar
from urllib.parse import urlparse

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, field_validator

from distillpipe.errors import ServerError
from distillpipe.redaction import byte_scrubber, is_secret_name, redact, secret_values

PLACEHOLDERS = ("model", "host", "port", "python")
LOG_TAIL_LINES = 15
LOG_COPY_WAIT = 5.0  # seconds for the last output of an exited server to reach its log
T = TypeVar("T")


class LaunchOptions(BaseModel):
    """``teacher.launch``: how to start the server when none answers."""

    model_config = ConfigDict(extra="forbid")

    command: list[str] = Field(
        min_length=1,
        description="argv template; {model} {host} {port} {python} are filled in",
    )
    host: str = "127.0.0.1"
    port: int | None = Field(
        None, ge=1, le=65535, description="default: base_url's port if given, else a free one"
    )
    startup_timeout: float = Field(900.0, gt=0, description="seconds to wait for /v1/models")
    stop_timeout: float = Field(30.0, gt=0, description="seconds between SIGTERM and SIGKILL")
    health_path: str = "/health"
    log: str | None = Field(None, description="default: <run_dir>/<name>/server.log")
    env: dict[str, str] = Field(default_factory=dict, description="extra environment variables")

    @field_validator("command")
    @classmethod
    def _known_placeholders(cls, command: list[str]) -> list[str]:
        for part in command:
            for _, name, _, _ in string.Formatter().parse(part):
                if name is not None and name not in PLACEHOLDERS:
                    known = ", ".join(f"{{{p}}}" for p in PLACEHOLDERS)
                    raise ValueError(f"unknown placeholder {{{name}}} in {part!r} (known: {known})")
        return command


def render_command(command: list[str], **values: object) -> list[str]:
    return [part.format_map(values) for part in command]


def handed_secrets(argv: list[str], env: dict[str, str]) -> set[str]:
    """What the server is given that it could print: the values of secret flags and
    secret-named variables of its command line and environment (the inherited
    ``OPENAI_API_KEY``s included; vLLM logs its arguments at startup)."""
    inherited = {value for name, value in os.environ.items() if is_secret_name(name)}
    return inherited | secret_values({"command": argv, "env": env})


def copy_scrubbed(source: IO[bytes], log_path: Path, secrets: set[str]) -> None:
    """Copy the server's output into its log line by line, secrets replaced by ***."""
    scrub = byte_scrubber(secrets)
    with source, log_path.open("ab") as log:
        for line in iter(source.readline, b""):
            log.write(scrub(line))
            log.flush()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with path.open("rb") as stream:
            stream.seek(max(0, stream.seek(0, os.SEEK_END) - 16384))
            text = stream.read().decode("utf-8", errors="replace")
    except OSError:
        return "(no log)"
    tail = [line for line in text.splitlines() if line.strip()][-lines:]
    return "\n".join(f"    {line}" for line in tail) or "    (the log is empty)"


def _parent_death_signal():
    """A pre-exec hook giving the child SIGTERM when its parent dies (Linux only).

    prctl is resolved here, in the parent: the hook runs between fork and exec,
    where only async-signal-safe work belongs. PDEATHSIG follows the thread that
    forked, so servers are started from the event loop's (main) thread.
    """
    if sys.platform != "linux":
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    pr_set_pdeathsig = 1

    def hook() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)

    return hook


async def answers(
    url: str, timeout: float = 2.0, headers: dict[str, str] | None = None
) -> int | None:
    """The HTTP status of a GET, or None when nothing answers."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
            session.get(url, headers=headers) as response,
        ):
            return response.status
    except (TimeoutError, aiohttp.ClientError, OSError):
        return None


class ManagedServer:
    """One launched (or reused) server; :meth:`start` is idempotent."""

    def __init__(
        self,
        launch: LaunchOptions,
        *,
        model: str,
        base_url: str | None,
        log_dir: Path | None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """``headers`` go with the readiness probes: a server started with ``--api-key``
        (vLLM's) answers ``/v1/models`` only with the key."""
        self.launch = launch
        self.headers = headers
        self.model = model
        self.given_url = base_url.rstrip("/") if base_url else None
        self.log_path = Path(launch.log) if launch.log else (log_dir or Path()) / "server.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.base_url: str | None = None
        self.reused = False
        self._lock: asyncio.Lock | None = None
        self._log_copier: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def _candidate(self) -> tuple[str, int | None, str]:
        """(host, port or None, base URL) to reuse or start on."""
        if self.given_url is not None:
            parsed = urlparse(self.given_url)
            host = parsed.hostname or self.launch.host
            if not _on_this_machine(host):
                raise ServerError(
                    f"teacher.launch: base_url {self.given_url} is not on this machine; "
                    "a launched server needs a local base_url (or none: a free port is picked)"
                )
            port = parsed.port or self.launch.port or (443 if parsed.scheme == "https" else 80)
            return host, port, self.given_url
        host, port = self.launch.host, self.launch.port
        return host, port, f"http://{host}:{port}/v1"

    def reusable_url(self) -> str | None:
        """Where an answering server would be reused, not started: ``base_url`` or
        ``launch.port``'s URL; None when a free port is picked, so none is reused."""
        _, port, url = self._candidate()
        return url if port is not None else None

    async def start(self) -> str:
        """The base URL of a server that answers: reused, or started and waited for."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self.base_url is None:
                self.base_url = await self._reuse_or_launch()
            self.check_alive()
            return self.base_url

    async def _reuse_or_launch(self) -> str:
        host, port, url = self._candidate()
        if port is not None:
            if await answers(f"{url}/models", headers=self.headers) == 200:
                self.reused = True
                return url
            if not port_is_free(host, port):
                raise ServerError(
                    f"teacher.launch: port {port} on {host} is taken by a process that does not "
                    f"answer {url}/models; stop it or choose another port"
                )
        else:
            port = free_port(host)
            url = f"http://{host}:{port}/v1"
        argv = render_command(
            self.launch.command, model=self.model, host=host, port=port, python=sys.executable
        )
        self._spawn(argv)
        await self._wait_ready(url)
        return url

    def _spawn(self, argv: list[str]) -> None:
        """Start the server; its output reaches the log through :func:`copy_scrubbed`."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        secrets = handed_secrets(argv, self.launch.env)
        with self.log_path.open("ab") as log:
            log.write(f"# distillpipe: starting {' '.join(redact(argv, secrets))}\n".encode())
        try:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.launch.env},
                start_new_session=True,
                preexec_fn=_parent_death_signal(),
            )
        except OSError as exc:
            raise ServerError(f"teacher.launch.command: cannot start {argv[0]}: {exc}") from exc
        assert self.process.stdout is not None
        self._log_copier = threading.Thread(
            target=copy_scrubbed,
            args=(self.process.stdout, self.log_path, secrets),
            name="server-log",
            daemon=True,
        )
        self._log_copier.start()
        with self.log_path.open("ab") as log:
            log.write(f"# distillpipe: server pid {self.process.pid}\n".encode())
        _live_servers.add(self)

    def _log_copied(self) -> None:
        """Wait (briefly) until a server that has exited has all its output in the log."""
        if self._log_copier is not None:
            self._log_copier.join(timeout=LOG_COPY_WAIT)

    async def _wait_ready(self, url: str) -> None:
        root = url.rsplit("/v1", 1)[0] if "/v1" in url else url
        started = time.monotonic()
        deadline = started + self.launch.startup_timeout
        while time.monotonic() < deadline:
            self.check_alive(starting=True)
            health = await answers(f"{root}{self.launch.health_path}", timeout=5.0)
            if health in (200, 404) and await answers(f"{url}/models", 5.0, self.headers) == 200:
                with self.log_path.open("ab") as log:
                    ready = time.monotonic() - started
                    log.write(f"# distillpipe: {url} answered after {ready:.1f}s\n".encode())
                return
            await asyncio.sleep(0.25)
        self.stop()
        raise ServerError(
            f"teacher.launch: the server did not answer {url}/models within "
            f"{self.launch.startup_timeout:g}s (log: {self.log_path}); last lines:\n"
            f"{log_tail(self.log_path)}"
        )

    def check_alive(self, *, starting: bool = False) -> None:
        if self.process is None or self.process.poll() is None:
            return
        code = self.process.returncode
        when = "while starting" if starting else "during the run"
        _live_servers.discard(self)
        self._log_copied()
        raise ServerError(
            f"teacher.launch: the server (pid {self.process.pid}) exited with code {code} {when} "
            f"(log: {self.log_path}); last lines:\n{log_tail(self.log_path)}"
        )

    async def watch(self, items: AsyncIterator[T]) -> AsyncIterator[T]:
        """Pass ``items`` through, failing at once if the server process dies."""
        if self.process is None:
            async for item in items:
                yield item
            return
        died = asyncio.ensure_future(self._exited())
        following: asyncio.Future[T] | None = None
        try:
            while True:
                following = asyncio.ensure_future(anext(items))
                await asyncio.wait({following, died}, return_when=asyncio.FIRST_COMPLETED)
                if not following.done():
                    self.check_alive()
                    raise ServerError("teacher.launch: the server was stopped during the run")
                try:
                    item = following.result()
                except StopAsyncIteration:
                    return
                except Exception:
                    # A dying server explains a failed request best; give its exit a moment.
                    await asyncio.wait({died}, timeout=1.0)
                    self.check_alive()
                    raise
                yield item
        finally:
            # The pending step must finish before the generator it drives can be closed.
            for task in (following, died):
                if task is not None and not task.done():
                    task.cancel()
            await asyncio.gather(*(t for t in (following, died) if t), return_exceptions=True)
            await items.aclose()  # type: ignore[attr-defined]

    async def _exited(self) -> None:
        while self.process is not None and self.process.poll() is None:
            await asyncio.sleep(0.2)

    def stop(self) -> None:
        """SIGTERM to the server's process group, SIGKILL after ``stop_timeout``; reaps it."""
        _live_servers.discard(self)
        process, self.process = self.process, None
        self.base_url = None
        if process is None:
            return
        if process.poll() is None:
            _signal_group(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=self.launch.stop_timeout)
            except subprocess.TimeoutExpired:
                _signal_group(process.pid, signal.SIGKILL)
                process.wait()
        # Children the server left behind (vLLM's engine workers) share its group.
        _signal_group(process.pid, signal.SIGKILL)
        self._log_copied()


def _on_this_machine(host: str) -> bool:
    if host in ("localhost", "0.0.0.0", "::1") or host.startswith("127."):
        return True
    try:
        with socket.socket() as sock:
            sock.bind((host, 0))  # an address of one of this machine's interfaces
        return True
    except OSError:
        return False


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


_live_servers: set[ManagedServer] = set()


@atexit.register
def _stop_live_servers() -> None:
    for server in list(_live_servers):
        server.stop()
