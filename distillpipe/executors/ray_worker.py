"""What runs inside a Ray actor: one teacher engine, answering batches of calls.

Calls travel as rows of two strings (the cache key and the call's JSON), and
answers come back as rows of (key, completion JSON, error) for the driver to
price and commit to its cache. A teacher error travels as a row too: Ray hands
the driver only the text of an exception raised in a worker, and the driver
must raise the same one-line error a local run would.

An API teacher's concurrency, rpm and tpm are the whole run's limits: each
actor's teacher is built with its share of them (``config_for_actor``).
"""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from pydantic import BaseModel

from distillpipe import errors
from distillpipe.config import Config
from distillpipe.errors import DistillpipeError
from distillpipe.stages.base import build_teacher
from distillpipe.structured import ResponseFormat
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
    if request.response_format is not None:  # as asked, not as its cache key holds it
        body["response_format"] = request.response_format.value
    if request.teacher is not None:
        body["teacher"] = request.teacher
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
        response_format=ResponseFormat.of(body.get("response_format")),
        teacher=body.get("teacher"),
    )
    return Call(request, body["sample"], key, body["seed"])


def with_actor_threads(options: M, num_cpus: float) -> M:
    """An in-process CPU engine (llama.cpp) gets the actor's CPUs as its threads, not
    every core of the node: options with an unset ``n_threads`` get ``num_cpus``."""
    if "n_threads" in type(options).model_fields and getattr(options, "n_threads") is None:  # noqa: B009
        return options.model_copy(update={"n_threads": max(1, int(num_cpus))})
    return options


SHARED_LIMITS = ("concurrency", "rpm", "tpm")


def with_limit_share(options: M, actor: int, actors: int) -> M:
    """Actor ``actor`` of ``actors`` gets its share of each run-wide limit the options set
    (concurrency, rpm, tpm): shares differ by at most one and add up to the limit."""
    update = {}
    for name in SHARED_LIMITS:
        limit = getattr(options, name, None) if name in type(options).model_fields else None
        if limit is not None:
            size, extra = divmod(limit, actors)
            update[name] = size + (1 if actor < extra else 0)
    return options.model_copy(update=update) if update else options


def most_actors(options: BaseModel) -> int | None:
    """The most actors that can each get a non-zero share of the run's limits."""
    limits = [getattr(options, name, None) for name in SHARED_LIMITS[:2]]
    present = [limit for limit in limits if limit is not None]
    return min(present) if present else None


def config_for_actor(config: Config, num_cpus: float, actor: int = 0, actors: int = 1) -> Config:
    teacher = with_limit_share(with_actor_threads(config.teacher, num_cpus), actor, actors)
    return config.model_copy(update={"teacher": teacher})


class TeacherWorker:
    """A Ray actor: built once (loads the model), then asked batches of calls.

    Its methods are coroutines, so Ray runs them on the actor's own event loop
    (where the teacher's connection pool lives) and the driver's second batch
    starts as soon as the first leaves slots free.
    """

    def __init__(self, config: Config) -> None:
        self.teacher = build_teacher(config)

    async def answer(self, rows: list[dict[str, str]]) -> list[tuple[str, str, str]]:
        """Completions as rows; a teacher error ends the batch as a row that carries it."""
        calls = [call_from_row(row["key"], row["call"]) for row in rows]
        answered: list[tuple[str, str, str]] = []
        try:
            async for call, completion in self.teacher.generate(calls):
                answered.append((call.key, completion_json(completion), ""))
        except DistillpipeError as exc:
            answered.append(("", "", f"{type(exc).__name__}\t{exc}"))
        return answered

    async def close(self) -> None:
        """Release the engine (a managed server, connections) before the actor is killed."""
        await self.teacher.aclose()


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
