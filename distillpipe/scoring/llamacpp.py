"""Response log-likelihoods from llama.cpp, reading only the logits needed.

llama-cpp-python's high-level path (``logits_all=True``) copies every
position's full logit row (262k floats for gemma 3) into a Python-side array;
that copy costs several times the forward pass. Here each batch asks
llama.cpp for logits only at the positions that predict a response token,
and reads them zero-copy: ``llama_get_logits`` is wrapped as a numpy view,
and the log-softmax is reduced row by row to one number (the target's
log-probability) without materialising anything vocabulary-sized in Python.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# Rows of logits per llama_decode call: llama.cpp sizes its output buffer by
# them (rows × vocabulary × 4 bytes), so this bounds memory at ~134 MB for gemma.
OUTPUT_ROWS = 128


@dataclass(frozen=True, slots=True)
class TokenNLL:
    """Negative log-likelihood of a target text: the sum over its tokens, and their count."""

    total: float
    tokens: int

    @property
    def mean(self) -> float:
        return self.total / self.tokens if self.tokens else float("nan")


class LlamaCppScorer:
    def __init__(
        self,
        model_path: str | Path,
        *,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        n_batch: int = 512,
    ) -> None:
        import llama_cpp
        from llama_cpp import Llama

        from distillpipe.teachers.llamacpp import quiet_llama_cpp_logs

        quiet_llama_cpp_logs()
        self._lib = llama_cpp
        self.llm = Llama(
            model_path=str(model_path),
            n_ctx=n_ctx,
            n_batch=n_batch,
            n_ubatch=n_batch,
            n_threads=n_threads or os.cpu_count() or 1,
            logits_all=False,
            swa_full=False,
            verbose=False,
        )
        self.n_ctx = n_ctx
        self.n_batch = n_batch
        self.n_vocab = self.llm.n_vocab()
        self._ctx = self.llm._ctx.ctx
        self._batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
        self._bos = self.llm.token_bos()

    def tokenize(self, text: str, *, bos: bool) -> list[int]:
        return self.llm.tokenize(text.encode(), add_bos=bos, special=False)

    def nll(self, prompt: str, target: str) -> TokenNLL:
        """NLL of ``target``'s tokens after ``prompt`` (an empty prompt: after BOS alone)."""
        context = self.tokenize(prompt, bos=True) if prompt else [self._bos]
        answer = self.tokenize(target, bos=False)
        if len(context) + len(answer) > self.n_ctx:  # score what fits: the answer's start
            answer = answer[: max(1, self.n_ctx // 2, self.n_ctx - len(context))]
            context = context[-(self.n_ctx - len(answer)) :]
        return self.nll_tokens(context, answer)

    def nll_tokens(self, context: list[int], answer: list[int]) -> TokenNLL:
        if not answer:
            return TokenNLL(0.0, 0)
        tokens = context + answer
        total = 0.0
        for end, outputs in self._evaluate(context, answer):
            following = tokens[end - outputs + 1 : end + 1]  # what each output row predicts
            total += self._target_nll(outputs, following)
        return TokenNLL(total, len(answer))

    def decode_only(self, context: list[int], answer: list[int]) -> None:
        """The same llama_decode calls as nll_tokens, logits left unread (benchmark peer)."""
        for _ in self._evaluate(context, answer):
            pass

    def _evaluate(self, context: list[int], answer: list[int]) -> Iterator[tuple[int, int]]:
        """Decode ``context + answer`` from an empty cache; after each llama_decode
        that produced logit rows, yield (end position, number of rows)."""
        tokens = context + answer
        if len(tokens) > self.n_ctx:
            raise ValueError(f"{len(tokens)} tokens exceed the scorer's n_ctx {self.n_ctx}")
        lib = self._lib
        lib.llama_memory_clear(lib.llama_get_memory(self._ctx), True)
        first_out = len(context) - 1  # the position whose logits predict answer[0]
        last = len(tokens) - 1  # the final token predicts nothing we score
        position = 0
        while position < last:
            # Positions before first_out need no logits: long chunks; after it, OUTPUT_ROWS.
            limit = self.n_batch if position + self.n_batch <= first_out else OUTPUT_ROWS
            end = min(last, position + limit)
            if position < first_out < end:
                end = min(end, first_out + OUTPUT_ROWS)
            outputs = self._decode(tokens, position, end, first_out)
            if outputs:
                yield end, outputs
            position = end

    def _decode(self, tokens: list[int], start: int, end: int, first_out: int) -> int:
        batch = self._batch
        outputs = 0
        for slot, position in enumerate(range(start, end)):
            batch.token[slot] = tokens[position]
            batch.pos[slot] = position
            batch.n_seq_id[slot] = 1
            batch.seq_id[slot][0] = 0
            wanted = position >= first_out
            batch.logits[slot] = wanted
            outputs += wanted
        batch.n_tokens = end - start
        code = self._lib.llama_decode(self._ctx, batch)
        if code != 0:
            raise RuntimeError(f"llama_decode failed with code {code}")
        return outputs

    def _target_nll(self, rows: int, following: list[int]) -> float:
        """Sum of -log p(next token) over the last ``rows`` positions of the batch."""
        pointer = self._lib.llama_get_logits(self._ctx)
        logits = np.ctypeslib.as_array(
            ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float)), shape=(rows, self.n_vocab)
        )
        targets = np.asarray(following, dtype=np.intp)
        return float(np.sum(log_sum_exp_rows(logits) - logits[np.arange(rows), targets]))

    def close(self) -> None:
        if self._batch is not None:
            self._lib.llama_batch_free(self._batch)
            self._batch = None
        self.llm.close()


def log_sum_exp_rows(logits: Any) -> Any:
    """log Σ exp over each row, row by row so the scratch stays one row long.

    When the row's peak is moderate, exp() of the raw logits can neither
    overflow (262,144 × e^70 < float32 max) nor lose the terms that matter
    (anything 80 below the peak is < e^-80 of it), so the subtraction pass is
    skipped; float32 pairwise summation is exact to ~1e-7 relative.
    """
    out = np.empty(logits.shape[0], dtype=np.float64)
    scratch = np.empty(logits.shape[1], dtype=np.float32)
    for i, row in enumerate(logits):
        peak = float(row.max())
        if -10.0 < peak < 70.0:
            np.exp(row, out=scratch)
            out[i] = np.log(float(scratch.sum()))
        else:
            np.subtract(row, peak, out=scratch)
            np.exp(scratch, out=scratch)
            out[i] = peak + np.log(float(scratch.sum()))
    return out
