"""What runs inside a Ray actor: one teacher engine, answering batches of calls.

Calls travel as rows of two strings (the cache key and the call's JSON), so
a Ray Dataset holds nothing but plain columns; answers come back as rows of
(key, completion JSON, error) for the driver to commit to its cache. A teacher
error travels as a row too: Ray Data hands the driver only the text of an
exception raised in a worker, and the driver must raise the same one-line error
a local run would.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, TypeVar

import numpy as np
import orjson
from pydantic import BaseModel

from distillpipe import errors
from distillpipe.config import Config
from distillpipe.errors import DistillpipeError
from distillpipe.stages.base import build_teacher
from distillpipe.teachers.base import Call, Completion, Request, SamplingParams

M = TypeVar("M", bound=BaseModel)


def call_to_row(call: Call) -> dict[str, str]:
    request = call.request
    body = {
        "id": request.id,
        **request.payload(),
        "params": request.params.as_dict(),
        "n": request.n,
        "sample": call.sample,
        "seed": call.seed,
    }
    return {"key": call.key, "call": orjson.dumps(body).decode()}


def call_from_row(key: str, text: str) -> Call:
    body = orjson.loads(text)
    params = body["params"]
    request = Request(
        id=body["id"],
        params=SamplingParams(**{**params, "stop": tuple(params["stop"])}),
        messages=tuple(body["messages"]) if "messages" in body else None,
        prompt=body.get("prompt"),
        n=body["n"],
    )
    return Call(request, body["sample"], key, body["seed"])


def with_actor_threads(options: M, num_cpus: float) -> M:
    """An in-process CPU engine (llama.cpp) gets the actor's CPUs as its threads, not
    every core of the node: options with an unset ``n_threads`` get ``num_cpus``."""
    if "n_threads" in type(options).model_fields and getattr(options, "n_threads") is None:  # noqa: B009
        return options.model_copy(update={"n_threads": max(1, int(num_cpus))})
    return options


def config_for_actor(config: Config, num_cpus: float) -> Config:
    return config.model_copy(update={"teacher": with_actor_threads(config.teacher, num_cpus)})


class TeacherWorker:
    """A Ray Data actor: built once per actor (loads the model), called once per batch."""

    def __init__(self, config: Config, num_cpus: float) -> None:
        self.teacher = build_teacher(config_for_actor(config, num_cpus))
        self.loop = asyncio.new_event_loop()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        calls = [
            call_from_row(str(key), str(call))
            for key, call in zip(batch["key"], batch["call"], strict=True)
        ]
        answered: list[tuple[str, str, str]] = []
        self.loop.run_until_complete(self._answer(calls, answered))
        return {
            "key": np.array([key for key, _, _ in answered], dtype=object),
            "completion": np.array([value for _, value, _ in answered], dtype=object),
            "error": np.array([error for _, _, error in answered], dtype=object),
        }

    async def _answer(self, calls: list[Call], answered: list[tuple[str, str, str]]) -> None:
        """Completions as rows; a teacher error ends the batch as a row that carries it."""
        try:
            async for call, completion in self.teacher.generate(calls):
                answered.append((call.key, completion_json(completion), ""))
        except DistillpipeError as exc:
            answered.append(("", "", f"{type(exc).__name__}\t{exc}"))

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # the actor is going away; no one to tell
            self.loop.run_until_complete(self.teacher.aclose())
            self.loop.close()


def completion_json(completion: Completion) -> str:
    return orjson.dumps(completion.to_cache()).decode()


def completion_from_json(text: Any) -> Completion:
    return Completion.from_cache(orjson.loads(str(text)))


def error_from_row(text: Any) -> DistillpipeError:
    """The driver-side error for an actor's error row (its class and one-line message)."""
    name, _, message = str(text).partition("\t")
    kind = getattr(errors, name, None)
    if not (isinstance(kind, type) and issubclass(kind, DistillpipeError)):
        kind = DistillpipeError
    return kind(message)
