"""A stand-in for ``vllm.LLM`` and its engine: the parts the vllm backend drives, as vLLM has them.

``StandInLLM(**engine_kwargs)`` is what the backend builds instead of
``vllm.LLM``: it records its keyword arguments and the thread that built it,
and has ``llm_engine`` and
``get_tokenizer()``, a real Hugging Face tokenizer trained here with a
Llama-style chat template that writes BOS, and a post-processor that adds BOS
to plain text, as Llama tokenizers do.

``StandInEngine`` behaves as ``vllm.LLMEngine`` does, in vLLM's own output
types (vllm_types.py):

- ``add_request(request_id, prompt, params)``: a text prompt is tokenized with
  the special tokens, a ``{"prompt_token_ids": [...]}`` taken as it is; a
  prompt longer than ``max_model_len`` is refused with vLLM's ValueError;
- ``step()``: one decoding step of continuous batching: at most
  ``max_num_seqs`` requests run, waiting ones join first come first served as
  slots free up, each running request gets one token and finishes at its
  ``max_tokens`` (finish_reason ``length``), so requests finish at different
  steps. With ``output_kind`` FINAL_ONLY only finished requests come back,
  otherwise every running one (``finished=False`` until it ends);
- ``abort_request(ids)``, ``has_unfinished_requests()``.

``fail_at_step=k`` makes step k raise torch's OutOfMemoryError, as an engine
out of GPU memory does; ``step_seconds`` makes a step take time, as on a GPU.
It records each request's prompt ids, its SamplingParams and the steps it was
added and finished at, and the threads that stepped it.
"""

from __future__ import annotations

import functools
import threading
import time
from dataclasses import dataclass
from typing import Any

from vllm_types import CompletionOutput, Logprob, RequestOutput, RequestOutputKind

# Two positions of top-3 alternatives as vLLM ranks them; the second sampled token
# (102) lies outside the top 3, so vLLM adds it with its own rank.
LOGPROBS = [
    {
        101: Logprob(logprob=-0.1, rank=1, decoded_token="Hi"),
        7: Logprob(logprob=-2.0, rank=2, decoded_token="Yo"),
        8: Logprob(logprob=-3.0, rank=3, decoded_token="Hey"),
    },
    {
        9: Logprob(logprob=-0.5, rank=1, decoded_token=" there"),
        10: Logprob(logprob=-1.5, rank=2, decoded_token=" all"),
        11: Logprob(logprob=-2.5, rank=3, decoded_token=" you"),
        102: Logprob(logprob=-4.0, rank=9, decoded_token=" seed"),
    },
]

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


@functools.cache
def tokenizer() -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    raw.train_from_iterator(
        ["user: Name a colour.\nassistant: Red.", "Once upon a time"] * 20, trainer
    )
    bos = raw.token_to_id("<s>")
    raw.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


@dataclass
class _Request:
    request_id: str
    prompt_ids: list[int]
    prompt_text: str
    params: Any
    generated: int = 0


class StandInEngine:
    def __init__(
        self,
        *,
        max_model_len: int = 256,
        max_num_seqs: int = 4,
        fail_at_step: int | None = None,
        step_seconds: float = 0.0,
    ) -> None:
        self.max_model_len = max_model_len
        self.max_num_seqs = max_num_seqs
        self.fail_at_step = fail_at_step
        self.step_seconds = step_seconds
        self.steps = 0
        self.waiting: list[_Request] = []
        self.running: list[_Request] = []
        self.prompts: dict[str, list[int]] = {}
        self.params: dict[str, Any] = {}
        self.added_at: dict[str, int] = {}
        self.finished_at: dict[str, int] = {}
        self.aborted: list[str] = []
        self.stepped_on: set[threading.Thread] = set()

    def add_request(self, request_id: str, prompt: Any, params: Any) -> None:
        if isinstance(prompt, str):
            ids = tokenizer()(prompt)["input_ids"]  # with BOS, as vLLM tokenizes a text prompt
        else:
            ids = list(prompt["prompt_token_ids"])
        if len(ids) > self.max_model_len:
            raise ValueError(
                f"The decoder prompt (length {len(ids)}) is longer than the maximum model "
                f"length of {self.max_model_len}. Make sure that `max_model_len` is no smaller "
                "than the number of text tokens."
            )
        text = tokenizer().decode(ids, skip_special_tokens=True)
        self.waiting.append(_Request(request_id, ids, text, params))
        self.prompts[request_id] = ids
        self.params[request_id] = params
        self.added_at[request_id] = self.steps

    def has_unfinished_requests(self) -> bool:
        return bool(self.waiting or self.running)

    def abort_request(self, request_ids: list[str]) -> None:
        gone = set(request_ids)
        self.aborted += [r.request_id for r in self.waiting + self.running if r.request_id in gone]
        self.waiting = [r for r in self.waiting if r.request_id not in gone]
        self.running = [r for r in self.running if r.request_id not in gone]

    def step(self) -> list[RequestOutput]:
        self.stepped_on.add(threading.current_thread())
        self.steps += 1
        if self.steps == self.fail_at_step:
            import torch

            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        time.sleep(self.step_seconds)
        while self.waiting and len(self.running) < self.max_num_seqs:
            self.running.append(self.waiting.pop(0))
        outputs = []
        for request in list(self.running):
            request.generated += 1
            finished = request.generated >= request.params.max_tokens
            if finished:
                self.running.remove(request)
                self.finished_at[request.request_id] = self.steps
            if finished or request.params.output_kind != RequestOutputKind.FINAL_ONLY:
                outputs.append(self._output(request, finished))
        return outputs

    def _output(self, request: _Request, finished: bool) -> RequestOutput:
        params = request.params
        token_ids = [101 + i for i in range(request.generated)]
        sample = CompletionOutput(
            index=0,
            text=f"{request.prompt_text} / seed {params.seed}",
            token_ids=token_ids,
            cumulative_logprob=None,
            logprobs=None if params.logprobs is None else LOGPROBS[: len(token_ids)],
            finish_reason="length" if finished else None,
            stop_reason=None,
        )
        return RequestOutput(
            request_id=request.request_id,
            prompt=None,
            prompt_token_ids=request.prompt_ids,
            prompt_logprobs=None,
            outputs=[sample],
            finished=finished,
        )


class StandInLLM:
    """Built with ``vllm.LLM``'s keyword arguments; they configure the engine it holds."""

    def __init__(self, engine: StandInEngine | None = None, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.built_on = threading.current_thread()
        self.llm_engine = engine or StandInEngine(max_model_len=kwargs.get("max_model_len") or 256)

    def get_tokenizer(self) -> Any:
        return tokenizer()
