# ruff: noqa: F811 - pytest fixtures imported from tiny_models are parameters here
"""Perplexity: the llama.cpp fast path against a naive full-logits computation,
fluent text against the same words shuffled, IFD, percentile cuts, and the
transformers backend on a tiny model built here."""

from __future__ import annotations

import random

import numpy as np
import pytest
from tiny_models import tiny_causal_lm  # noqa: F401 - a fixture, used as a parameter below

from distillpipe.filters.base import build_filter
from distillpipe.filters.perplexity import PerplexityOptions
from distillpipe.records import new_record

FLUENT = (
    "The water cycle moves water around the planet. The sun heats the oceans, "
    "water evaporates into the air, cools into clouds and falls back as rain."
)


def shuffled(text: str, seed: int = 0) -> str:
    words = text.split()
    random.Random(seed).shuffle(words)
    return " ".join(words)


def with_response(instruction: str, text: str) -> dict:
    record = new_record(instruction)
    record["responses"] = [
        {"text": text, "model": "m", "finish_reason": "stop", "usage": {}, "sample": 0}
    ]
    return record


@pytest.fixture(scope="module")
def gemma_scorer(gguf_path):
    from distillpipe.scoring.llamacpp import LlamaCppScorer

    scorer = LlamaCppScorer(gguf_path, n_ctx=512, n_threads=2)
    yield scorer
    scorer.close()


def naive_nll(gguf_path, prompt: str, target: str, n_batch: int = 512) -> float:
    """Every position's full logits copied out by llama-cpp-python, log-softmax in float64."""
    from llama_cpp import Llama

    llm = Llama(
        model_path=str(gguf_path), n_ctx=512, logits_all=True, swa_full=False, verbose=False,
        n_threads=2, n_batch=n_batch, n_ubatch=n_batch,
    )  # fmt: skip
    try:
        context = llm.tokenize(prompt.encode(), add_bos=True, special=False)
        answer = llm.tokenize(target.encode(), add_bos=False, special=False)
        llm.eval(context + answer)
        logits = np.array(llm.scores[: len(context) + len(answer)], dtype=np.float64)
        peak = logits.max(axis=1, keepdims=True)
        log_probs = logits - peak - np.log(np.exp(logits - peak).sum(axis=1, keepdims=True))
        rows = np.arange(len(context) - 1, len(context) + len(answer) - 1)
        return float(-log_probs[rows, answer].mean())
    finally:
        llm.close()


@pytest.mark.slow
def test_fast_path_equals_a_naive_full_logits_computation(gemma_scorer, gguf_path) -> None:
    prompt = "### Instruction:\nDescribe the water cycle.\n\n### Response:\n"
    fast = gemma_scorer.nll(prompt, FLUENT)
    assert fast.tokens > 20
    assert fast.mean == pytest.approx(naive_nll(gguf_path, prompt, FLUENT), abs=1e-4)


@pytest.mark.slow
def test_fast_path_spans_several_output_chunks(gemma_scorer, gguf_path, monkeypatch) -> None:
    import distillpipe.scoring.llamacpp as module

    # Many decode calls with an uneven last one. llama.cpp's float maths depends on
    # the micro-batch size, so the naive peer evaluates in the same 7-token batches.
    monkeypatch.setattr(module, "OUTPUT_ROWS", 7)
    prompt = "Question: what moves water around the planet?\nAnswer:"
    chunked = gemma_scorer.nll(prompt, FLUENT)
    assert chunked.mean == pytest.approx(naive_nll(gguf_path, prompt, FLUENT, 7), abs=1e-4)


@pytest.mark.slow
def test_fluent_text_scores_lower_than_the_same_words_shuffled(gguf_path) -> None:
    options = PerplexityOptions(type="perplexity", ifd=True, n_ctx=512, n_threads=2)
    scorer = build_filter(options)
    try:
        records = [
            with_response("Describe the water cycle.", FLUENT),
            with_response("Describe the water cycle.", shuffled(FLUENT)),
        ]
        fluent, jumbled = scorer.score(records)
    finally:
        scorer.close()
    assert fluent["tokens"] > 20 and fluent["sample"] == 0
    assert fluent["perplexity"] < jumbled["perplexity"]
    assert fluent["perplexity"] == pytest.approx(np.exp(fluent["nll"]), rel=1e-5)
    assert 0 < fluent["ifd"] < 2 and 0 < jumbled["ifd"] < 2


def test_percentile_cut_keeps_the_low_perplexity_share() -> None:
    options = PerplexityOptions(type="perplexity", max="p50")
    ppl = build_filter(options)
    assert ppl.needs_all_scores
    scores = [{"perplexity": float(v), "sample": 0} for v in (5, 1, 4, 2, 3)]
    ppl.fit([ppl.value(s) for s in scores])
    verdicts = [ppl.decide({}, s) for s in scores]
    assert [v.keep for v in verdicts] == [False, True, False, True, True]
    assert verdicts[0].reason == "perplexity 5 > max 3 (p50)"


def test_record_without_response_text_is_rejected_not_lost() -> None:
    ppl = build_filter(PerplexityOptions(type="perplexity", max=10))
    assert ppl.decide({}, None).reason == "no response text to score"


def test_transformers_backend_batches_and_masks_the_prompt(tiny_causal_lm) -> None:
    options = PerplexityOptions(
        type="perplexity", backend="transformers", model=str(tiny_causal_lm), ifd=True,
        prompt="plain",
    )  # fmt: skip
    ppl = build_filter(options)
    records = [
        with_response("Name three primary colours.", "Red, yellow and blue."),
        with_response("What is the capital of France?", "Paris is the capital of France."),
        with_response("Say nothing.", ""),
    ]
    batched = ppl.score(records)
    one_by_one = [ppl.score([r])[0] for r in records[:2]]
    assert batched[2] is None  # nothing to score
    for together, alone in zip(batched[:2], one_by_one, strict=True):
        assert together["nll"] == pytest.approx(alone["nll"], abs=1e-4)  # padding is masked
        assert together["tokens"] == alone["tokens"] > 0
        assert "ifd" in together
    # a random tiny model is near-uniform over its vocabulary: perplexity ~ vocab size
    vocab = len(ppl.load().tokenizer)
    assert vocab / 4 < batched[0]["perplexity"] < vocab * 4


@pytest.mark.parametrize("shift", [0.0, 100.0, -50.0])  # both branches: with and without a shift
def test_row_log_sum_exp_matches_float64(shift: float) -> None:
    from distillpipe.scoring.llamacpp import log_sum_exp_rows

    rows = np.random.default_rng(1).standard_normal((3, 262_144)) * 4 + shift
    logits = rows.astype(np.float32)
    exact = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
    assert log_sum_exp_rows(logits) == pytest.approx(exact, abs=1e-5)
