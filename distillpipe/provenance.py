"""Where a response came from, on every response (``responses[].provenance``): a
trace is only reproducible with it.

    backend    the teacher backend
    model      the model as the provider reported it in its answer
    endpoint   the endpoint's host (and port); None in process. Never a key: a URL's
               user and password are not kept
    params     the sampling parameters as sent (the model's rules applied), the seed
    template   sha256 of the prompt template the request was rendered from
    attempt    which attempt of the sample this is (the truncation ladder's rung)
    time       when the teacher answered (UTC), kept in the cache, so a replay (and
               with it a rerun's output) says the same

Built in this one place; the stages hand it the request and the completion.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any
from urllib.parse import urlparse

from distillpipe.dispatch import Dispatcher
from distillpipe.teachers.base import Completion, Request


def template_hash(source: str) -> str:
    return "sha256:" + hashlib.sha256(source.encode()).hexdigest()


def endpoint_host(options: Any) -> str | None:
    """``host[:port]`` of the teacher's endpoint; None for an in-process teacher."""
    url = getattr(options, "base_url", None)
    if not url:
        return None
    parsed = urlparse(url)
    if parsed.hostname is None:
        return None
    return f"{parsed.hostname}:{parsed.port}" if parsed.port else parsed.hostname


class Provenance:
    """Builds ``responses[]`` entries with their provenance for one stage's teacher."""

    def __init__(self, dispatcher: Dispatcher, template: str | None) -> None:
        self.dispatcher = dispatcher
        self.teacher = dispatcher.teacher
        self.template = template
        self.endpoint = endpoint_host(self.teacher.options)

    def of(self, request: Request, sample: int, completion: Completion) -> dict[str, Any]:
        params = request.params
        if completion.ladder:  # the attempt that answered was sent at its own limit
            params = replace(params, max_tokens=completion.ladder[-1])
        (call,) = self.dispatcher.calls_for(
            replace(request, params=params, n=1, first_sample=sample)
        )
        sent = self.teacher.options.request_params(params)
        if request.response_format is not None:
            sent |= self.teacher.options.format_params()
        return {
            "backend": self.teacher.name,
            "model": completion.model,
            "endpoint": self.endpoint,
            "params": {**sent, "seed": call.seed},
            "template": self.template,
            "attempt": max(len(completion.ladder), 1),
            "time": completion.created,
        }

    def responses(self, request: Request, completions: list[Completion]) -> list[dict[str, Any]]:
        """The entries of ``request``'s samples, in sample order."""
        out = []
        for offset, completion in enumerate(completions):
            sample = request.first_sample + offset
            response = completion.to_response(sample)
            response["provenance"] = self.of(request, sample, completion)
            out.append(response)
        return out
