"""Length bounds in characters, words and tokens on the instruction, the
responses' answers (``response``) and their reasoning traces (``reasoning``),
each apart, and the truncation check: a response the teacher cut at its token
limit (``finish_reason: "length"``) is rejected as truncated.

Tokens are counted with the teacher's tokenizer where it is known (the GGUF
vocabulary of a llama.cpp teacher; a response's own ``usage.completion_tokens``
when the teacher reported it, less its ``reasoning_tokens``: a reasoning
model's hidden reasoning is not part of the response; a trace's own count is its
``usage.reasoning_tokens``) and with OpenAI's
encodings otherwise (``distillpipe.tokens``). They are only counted when a
token bound is set.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from distillpipe.filters.base import (
    Filter,
    FilterOptions,
    Record,
    ResponseScope,
    Verdict,
    responses_in_scope,
)
from distillpipe.filters.text import word_count
from distillpipe.records import user_prompt
from distillpipe.tokens import count_tokens, encoding_for_model, encoding_named


class Bounds(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_chars: int | None = Field(None, ge=0)
    max_chars: int | None = Field(None, ge=0)
    min_words: int | None = Field(None, ge=0)
    max_words: int | None = Field(None, ge=0)
    min_tokens: int | None = Field(None, ge=0)
    max_tokens: int | None = Field(None, ge=0)

    @property
    def wants_tokens(self) -> bool:
        return self.min_tokens is not None or self.max_tokens is not None

    def checks(self) -> tuple[tuple[str, int | None, int | None], ...]:
        """(unit, min, max) for each unit that has a bound."""
        return tuple(
            (unit, getattr(self, f"min_{unit}"), getattr(self, f"max_{unit}"))
            for unit in ("chars", "words", "tokens")
            if getattr(self, f"min_{unit}") is not None or getattr(self, f"max_{unit}") is not None
        )


def violation(
    checks: tuple[tuple[str, int | None, int | None], ...], counts: dict[str, Any]
) -> str | None:
    for unit, low, high in checks:
        count = counts[unit]
        if low is not None and count < low:
            return f"{count} {unit} < min {low}"
        if high is not None and count > high:
            return f"{count} {unit} > max {high}"
    return None


class LengthOptions(FilterOptions):
    type: str = "length"
    instruction: Bounds = Field(default_factory=Bounds, description="on instruction + input")
    response: Bounds = Field(default_factory=Bounds, description="on the answer (text)")
    reasoning: Bounds = Field(
        default_factory=Bounds, description="on the reasoning trace, apart from the answer"
    )
    reject_truncated: bool = Field(True, description='reject finish_reason "length"')
    responses: ResponseScope = Field("all", description="check every response, or the primary")
    count_with: str = Field(
        "auto", description="auto (the teacher's tokenizer, else OpenAI's) or tiktoken:<name>"
    )


class LengthFilter(Filter):
    type: ClassVar[str] = "length"
    Options = LengthOptions
    options: LengthOptions

    def __init__(self, options: FilterOptions, config: Any = None) -> None:
        super().__init__(options, config)
        self._count_tokens: Callable[[str], int] | None = None
        self._instruction_checks = self.options.instruction.checks()
        self._response_checks = self.options.response.checks()
        self._instruction_tokens = self.options.instruction.wants_tokens
        self._response_tokens = self.options.response.wants_tokens
        self._reasoning_checks = self.options.reasoning.checks()
        self._reasoning_tokens = self.options.reasoning.wants_tokens

    def count_tokens(self, text: str) -> int:
        if self._count_tokens is None:
            self._count_tokens = load_token_counter(self.options.count_with, self.config)
        return self._count_tokens(text)

    def score(self, records: Sequence[Record]) -> list[Any]:
        return [self._score_one(record) for record in records]

    def _score_one(self, record: Record) -> dict[str, Any]:
        prompt = user_prompt(record)
        instruction = {"chars": len(prompt), "words": word_count(prompt)}
        if self._instruction_tokens:
            instruction["tokens"] = self.count_tokens(prompt)
        counted = []
        for sample, response in responses_in_scope(record, self.options.responses):
            text = response.get("text") or ""
            counts = {
                "sample": sample,
                "chars": len(text),
                "words": word_count(text),
                "truncated": response.get("finish_reason") == "length",
            }
            if self._response_tokens:
                usage = response.get("usage") or {}
                known = (usage.get("completion_tokens") or 0) - usage.get("reasoning_tokens", 0)
                counts["tokens"] = known if known > 0 else self.count_tokens(text)
            if self._reasoning_checks:
                counts["reasoning"] = self._trace_counts(response)
            counted.append(counts)
        return {"instruction": instruction, "responses": counted}

    def _trace_counts(self, response: dict[str, Any]) -> dict[str, int]:
        trace = response.get("reasoning") or ""
        counts = {"chars": len(trace), "words": word_count(trace)}
        if self._reasoning_tokens:
            reported = (response.get("usage") or {}).get("reasoning_tokens") or 0
            counts["tokens"] = reported if reported > 0 else self.count_tokens(trace)
        return counts

    def value(self, score: Any) -> float | None:
        responses = score["responses"]
        return float(responses[0]["words"]) if responses else None

    def decide(self, record: Record, score: Any) -> Verdict:
        if self._instruction_checks:
            problem = violation(self._instruction_checks, score["instruction"])
            if problem:
                return Verdict.rejected(f"instruction: {problem}", score)
        reject_truncated = self.options.reject_truncated
        for counts in score["responses"]:
            if reject_truncated and counts["truncated"]:
                return Verdict.rejected(
                    f"response {counts['sample']} truncated at the token limit", score
                )
            if self._response_checks:
                problem = violation(self._response_checks, counts)
                if problem:
                    return Verdict.rejected(f"response {counts['sample']}: {problem}", score)
            if self._reasoning_checks:
                problem = violation(self._reasoning_checks, counts["reasoning"])
                if problem:
                    return Verdict.rejected(f"reasoning {counts['sample']}: {problem}", score)
        return Verdict.kept(score)


def load_token_counter(spec: str, config: Any) -> Callable[[str], int]:
    """The teacher's tokenizer when it is a local GGUF, else a tiktoken encoding."""
    teacher = getattr(config, "teacher", None)
    if spec == "auto" and teacher is not None and teacher.backend == "llamacpp":
        from llama_cpp import Llama

        from distillpipe.models import resolve_gguf
        from distillpipe.teachers.llamacpp import quiet_llama_cpp_logs

        quiet_llama_cpp_logs()
        vocab = Llama(
            model_path=str(resolve_gguf(teacher.model_path)), vocab_only=True, verbose=False
        )
        return lambda text: len(vocab.tokenize(text.encode(), add_bos=False, special=False))
    name = spec.partition(":")[2] if spec.startswith("tiktoken:") else None
    model = getattr(teacher, "model", "") or ""
    encoding = encoding_named(name) if name else encoding_for_model(model)
    return lambda text: count_tokens(encoding, text)
