"""One thread owns the vLLM engine and steps it; each finished request goes back at once.

vLLM's offline ``LLM.generate`` / ``LLM.chat`` return only when the whole list
is done, so a crash mid-chunk would lose every finished sample with it. The
engine underneath (``vllm.LLMEngine``: ``add_request``, ``step``,
``abort_request``, ``has_unfinished_requests``; the same names from vLLM 0.6
through the V1 engine) hands back each ``RequestOutput`` in the step it
finishes. :class:`EngineLoop` drives it the way ``LLM._run_engine`` does —
every request of a chunk added, then ``step()`` until none is left — but
delivers the finished outputs step by step, so the dispatcher commits each
completion to the cache as it finishes. Chunks join the running engine as
they arrive: the next chunk's requests are added while the last one's
slowest requests still run, so the GPU does not drain at chunk boundaries.

The engine is built before the loop starts, on the caller's thread (the main
thread under the CLI: vLLM's V1 engine installs signal handlers, which Python
allows only there). From then on only the loop's thread touches it: the
engine is not thread-safe. Other threads talk to the loop through one queue.
"""

from __future__ import annotations

import contextlib
import itertools
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from distillpipe.errors import FatalTeacherError
from distillpipe.teachers.base import Call

Delivery = list[tuple[Call, Any]] | BaseException
"""What a chunk receives: its calls that finished in one step with their
``RequestOutput``, or why it failed."""


@dataclass(eq=False)
class Chunk:
    """One dispatch chunk in the engine; ``deliver`` must be safe to call from any thread."""

    calls: Sequence[Call]
    deliver: Callable[[Delivery], None]


@dataclass
class _Running:
    """The engine's requests of ours that have not finished: request id -> (chunk, call)."""

    requests: dict[str, tuple[Chunk, Call]] = field(default_factory=dict)

    def drop(self, chunk: Chunk) -> list[str]:
        """Forget the chunk's requests; their ids, to abort."""
        ids = [rid for rid, (owner, _) in self.requests.items() if owner is chunk]
        for rid in ids:
            del self.requests[rid]
        return ids

    def chunks(self) -> list[Chunk]:
        return list({id(owner): owner for owner, _ in self.requests.values()}.values())


class EngineLoop:
    """Steps a vLLM engine on its own thread, handing finished outputs to their chunks.

    ``prepare`` turns a call into ``(prompt, sampling_params)`` for
    ``add_request``, on the loop's thread (it may use the engine's tokenizer,
    which the engine uses too). A failed engine step fails every
    chunk in the engine and every later one: the engine is not trusted again
    (rerunning resumes from the cache).
    """

    def __init__(self, engine: Any, prepare: Callable[[Call], tuple[Any, Any]]) -> None:
        self._engine = engine
        self._prepare = prepare
        self._inbox: queue.SimpleQueue[tuple[str, Chunk | None]] = queue.SimpleQueue()
        self._ids = itertools.count()
        self._thread = threading.Thread(target=self._serve, name="vllm-engine", daemon=True)
        self._broken: FatalTeacherError | None = None

    def submit(self, calls: Sequence[Call], deliver: Callable[[Delivery], None]) -> Chunk:
        chunk = Chunk(calls, deliver)
        self._inbox.put(("add", chunk))
        if self._thread.ident is None:
            self._thread.start()
        return chunk

    def cancel(self, chunk: Chunk) -> None:
        """Abort the chunk's unfinished requests (its consumer went away)."""
        self._inbox.put(("cancel", chunk))

    def close(self) -> None:
        """Abort whatever still runs and stop the thread."""
        if self._thread.ident is not None:
            self._inbox.put(("close", None))
            self._thread.join()

    # -- the loop's thread ----------------------------------------------------
    def _serve(self) -> None:
        running = _Running()
        while True:
            try:
                for kind, chunk in self._take(block=not running.requests):
                    if kind == "close":
                        with contextlib.suppress(Exception):  # closing: nobody waits for them
                            self._abort(list(running.requests))
                        return
                    assert chunk is not None
                    if kind == "cancel":
                        self._abort(running.drop(chunk))
                    else:
                        self._add(chunk, running)
                if running.requests:
                    self._step(running)
            except Exception as exc:  # an abort that failed: the engine cannot be trusted
                self._fail(running, exc)

    def _take(self, *, block: bool) -> list[tuple[str, Chunk | None]]:
        """Every message waiting; when the engine is idle, wait for the first."""
        messages = [self._inbox.get()] if block else []
        while True:
            try:
                messages.append(self._inbox.get_nowait())
            except queue.Empty:
                return messages

    def _add(self, chunk: Chunk, running: _Running) -> None:
        if self._broken is not None:
            chunk.deliver(self._broken)
            return
        for call in chunk.calls:
            request_id = f"distillpipe-{next(self._ids)}"
            try:
                prompt, params = self._prepare(call)
                self._engine.add_request(request_id, prompt, params)
            except Exception as exc:  # a prompt over max_model_len, a bad parameter, no template
                added = running.drop(chunk)
                detail = _first_line(exc)
                if not isinstance(exc, ValueError):
                    detail = f"{type(exc).__name__}: {detail}"
                refused = FatalTeacherError(
                    f"vLLM refused it: {detail}", request_id=call.request.id
                )
                refused.__cause__ = exc
                chunk.deliver(refused)
                self._abort(added)
                return
            running.requests[request_id] = (chunk, call)

    def _step(self, running: _Running) -> None:
        try:
            if not self._engine.has_unfinished_requests():
                dropped = len(running.requests)
                raise RuntimeError(f"the engine dropped {dropped} requests unfinished")
            outputs = self._engine.step()
        except Exception as exc:  # out of GPU memory, a dead engine core
            self._fail(running, exc)
            return
        finished: dict[int, tuple[Chunk, list[tuple[Call, Any]]]] = {}
        for output in outputs:
            if not output.finished or output.request_id not in running.requests:
                continue  # a partial output, or a request that is not ours
            chunk, call = running.requests.pop(output.request_id)
            finished.setdefault(id(chunk), (chunk, []))[1].append((call, output))
        for chunk, done in finished.values():
            chunk.deliver(done)

    def _fail(self, running: _Running, exc: Exception) -> None:
        self._broken = FatalTeacherError(
            f"the vLLM engine failed: {type(exc).__name__}: {_first_line(exc)} "
            "(finished samples are cached; rerun to resume)"
        )
        self._broken.__cause__ = exc
        chunks = running.chunks()
        with contextlib.suppress(Exception):  # the engine may be past answering
            self._abort(list(running.requests))
        running.requests.clear()
        for chunk in chunks:
            chunk.deliver(self._broken)

    def _abort(self, request_ids: list[str]) -> None:
        if request_ids:
            self._engine.abort_request(request_ids)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no message"
