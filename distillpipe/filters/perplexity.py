"""Perplexity of each record's primary response conditioned on its instruction,
and optionally IFD (Li et al. 2023): conditional over unconditional response
loss, s(A|Q) / s(A). Keeps records within [min, max] of the chosen metric,
absolute or a percentile of this run (IFD > 1 means the prompt does not help).

Backends: ``llamacpp`` (default: the embedded gemma GGUF; the fast path in
``scoring/llamacpp.py``) and ``transformers`` (any Hugging Face causal LM,
batched, CPU or GPU).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

from pydantic import Field

from distillpipe.filters.base import (
    FilterOptions,
    Record,
    ThresholdFilter,
    ThresholdOptions,
    Verdict,
    primary_response,
)
from distillpipe.prompts import prompts_for
from distillpipe.scoring.llamacpp import TokenNLL


class PerplexityOptions(ThresholdOptions):
    type: str = "perplexity"
    backend: Literal["llamacpp", "transformers"] = "llamacpp"
    model: str | None = Field(
        None, description="llamacpp: a GGUF path (default: the embedded gemma); "
        "transformers: a model name or folder"
    )  # fmt: skip
    metric: Literal["perplexity", "ifd"] = Field("perplexity", description="what min/max bound")
    ifd: bool = Field(False, description="also score IFD (one more pass per record)")
    prompt: Literal["template", "plain"] = Field(
        "template", description="template: generate's completion template; plain: the text alone"
    )
    n_ctx: int = Field(2048, ge=128, description="llamacpp context; longer records are cut")
    n_threads: int | None = Field(None, ge=1)
    device: str = Field("auto", description="transformers: auto, cpu, cuda, cuda:1 ...")
    dtype: str = Field("auto", description="transformers: auto, float32, bfloat16, float16")
    batch_size: int = Field(16, ge=1)

    def optional_modules(self) -> dict[str, str]:
        if self.backend == "transformers":
            return {"torch": "hf", "transformers": "hf"}
        return {}


class PerplexityFilter(ThresholdFilter):
    type: ClassVar[str] = "perplexity"
    Options = PerplexityOptions
    options: PerplexityOptions

    def __init__(self, options: FilterOptions, config: Any = None) -> None:
        super().__init__(options, config)
        self.metric = self.options.metric
        self._scorer: Any = None

    def load(self) -> Any:
        if self._scorer is None:
            options = self.options
            if options.backend == "llamacpp":
                from distillpipe.models import resolve_gguf
                from distillpipe.scoring.llamacpp import LlamaCppScorer

                self._scorer = LlamaCppScorer(
                    resolve_gguf(options.model), n_ctx=options.n_ctx, n_threads=options.n_threads
                )
            else:
                from distillpipe.scoring.transformers import TransformersScorer

                if not options.model:
                    from distillpipe.errors import ConfigError

                    raise ConfigError("filter perplexity: backend transformers needs `model`")
                self._scorer = TransformersScorer(
                    options.model, device=options.device, dtype=options.dtype
                )
        return self._scorer

    def prompt_text(self, record: Record) -> str:
        if self.options.prompt == "plain":
            extra = record.get("input")
            return (
                f"{record['instruction']}\n\n{extra}\n\n"
                if extra
                else f"{record['instruction']}\n\n"
            )
        template = getattr(getattr(self.config, "generate", None), "template", "default")
        return prompts_for(self.config).render(
            f"generate/{template}.completion.jinja",
            instruction=record["instruction"],
            input=record.get("input", ""),
            system=record.get("system", ""),
        )

    def score(self, records: Sequence[Record]) -> list[Any]:
        scorer = self.load()
        wanted = [(i, primary_response(r)) for i, r in enumerate(records)]
        present = [(i, found) for i, found in wanted if found and found[1].get("text")]
        pairs = [(self.prompt_text(records[i]), found[1]["text"]) for i, found in present]
        conditional = self._nll(scorer, pairs)
        unconditional = (
            self._nll(scorer, [("", target) for _, target in pairs])
            if self.options.ifd or self.metric == "ifd"
            else [None] * len(pairs)
        )
        scores: list[Any] = [None] * len(records)
        for (i, (sample, _)), cond, alone in zip(present, conditional, unconditional, strict=True):
            scores[i] = _score(sample, cond, alone)
        return scores

    def _nll(self, scorer: Any, pairs: list[tuple[str, str]]) -> list[TokenNLL]:
        if not pairs:
            return []
        if hasattr(scorer, "nll_batch"):
            return scorer.nll_batch(pairs)
        return [scorer.nll(prompt, target) for prompt, target in pairs]

    def value(self, score: Any) -> float | None:
        return None if score is None else score.get(self.metric)

    def decide(self, record: Record, score: Any) -> Verdict:
        if score is None:
            return Verdict.rejected("no response text to score")
        reason = self.check(self.value(score))
        return Verdict.rejected(reason, score) if reason else Verdict.kept(score)

    def close(self) -> None:
        if self._scorer is not None and hasattr(self._scorer, "close"):
            self._scorer.close()
        self._scorer = None


def _score(sample: int, conditional: TokenNLL, alone: TokenNLL | None) -> dict[str, Any]:
    score: dict[str, Any] = {
        "sample": sample,
        "tokens": conditional.tokens,
        "nll": round(conditional.mean, 6),
        "perplexity": round(math.exp(conditional.mean), 6),
    }
    if alone is not None and alone.tokens:
        score["ifd"] = round(conditional.mean / alone.mean, 6) if alone.mean else None
    return score
