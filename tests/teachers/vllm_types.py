"""vLLM's own output and parameter types where vLLM imports; else a recorded copy of them.

The copy mirrors vLLM's ``vllm.outputs.RequestOutput`` / ``CompletionOutput``,
``vllm.logprobs.Logprob``, ``vllm.SamplingParams``, ``RequestOutputKind`` and
``StructuredOutputsParams`` (vLLM >= 0.10.2):
the same names, fields and constructor keywords (only those distillpipe reads
or passes). There is no GPU here and vLLM does not install without one, so
CI uses the copy; with the wheel's pure-Python modules importable the same
tests run against the real classes (``REAL_VLLM`` says which).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

try:
    from vllm.logprobs import Logprob
    from vllm.outputs import CompletionOutput, RequestOutput
    from vllm.sampling_params import RequestOutputKind, SamplingParams, StructuredOutputsParams

    REAL_VLLM = True
except ImportError:
    REAL_VLLM = False

    class RequestOutputKind(enum.Enum):  # type: ignore[no-redef]
        CUMULATIVE = 0  # every step: the whole output so far
        DELTA = 1  # every step: the new tokens only
        FINAL_ONLY = 2  # only when the request finishes

    @dataclass
    class Logprob:  # type: ignore[no-redef]
        logprob: float
        rank: int | None = None
        decoded_token: str | None = None

    @dataclass
    class CompletionOutput:  # type: ignore[no-redef]
        index: int
        text: str
        token_ids: list[int]
        cumulative_logprob: float | None
        logprobs: list[dict[int, Logprob]] | None
        finish_reason: str | None = None
        stop_reason: int | str | None = None

    class RequestOutput:  # type: ignore[no-redef]
        def __init__(
            self,
            request_id: str,
            prompt: str | None,
            prompt_token_ids: list[int] | None,
            prompt_logprobs: Any,
            outputs: list[CompletionOutput],
            finished: bool,
        ) -> None:
            self.request_id = request_id
            self.prompt = prompt
            self.prompt_token_ids = prompt_token_ids
            self.prompt_logprobs = prompt_logprobs
            self.outputs = outputs
            self.finished = finished

    @dataclass
    class StructuredOutputsParams:  # type: ignore[no-redef]
        json: str | dict[str, Any] | None = None
        regex: str | None = None
        choice: list[str] | None = None
        grammar: str | None = None
        json_object: bool | None = None

    @dataclass
    class SamplingParams:  # type: ignore[no-redef]
        n: int = 1
        presence_penalty: float = 0.0
        frequency_penalty: float = 0.0
        temperature: float = 1.0
        top_p: float = 1.0
        seed: int | None = None
        stop: str | list[str] | None = None
        max_tokens: int | None = 16
        logprobs: int | None = None
        output_kind: RequestOutputKind = RequestOutputKind.CUMULATIVE
        structured_outputs: StructuredOutputsParams | None = None


__all__ = [
    "REAL_VLLM",
    "CompletionOutput",
    "Logprob",
    "RequestOutput",
    "RequestOutputKind",
    "SamplingParams",
    "StructuredOutputsParams",
]
