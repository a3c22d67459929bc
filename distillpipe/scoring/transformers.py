"""Hugging Face models for scoring: a causal LM's response log-likelihoods and a
sequence-classification reward model. Both batch on CPU or GPU and load any
model ``from_pretrained`` can (a hub name or a local folder)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from distillpipe.errors import MissingDependencyError
from distillpipe.scoring.llamacpp import TokenNLL


def _torch_and_transformers(what: str) -> tuple[Any, Any]:
    try:
        import torch
        import transformers
    except ImportError:
        raise MissingDependencyError(what, "hf") from None
    return torch, transformers


def pick_device(torch: Any, device: str) -> str:
    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


class TransformersScorer:
    """Mean response NLL under a causal LM, prompt tokens masked out, padded batches."""

    def __init__(self, model: str, *, device: str = "auto", dtype: str = "auto") -> None:
        torch, transformers = _torch_and_transformers("the transformers perplexity backend")
        self.torch = torch
        self.device = pick_device(torch, device)
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(model)
        self.model = transformers.AutoModelForCausalLM.from_pretrained(
            model, dtype=_dtype(torch, dtype, self.device)
        ).to(self.device)
        self.model.eval()
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = self.tokenizer.eos_token_id or 0

    def _ids(self, text: str, *, bos: bool) -> list[int]:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        bos_id = self.tokenizer.bos_token_id
        return [bos_id, *ids] if bos and bos_id is not None else ids

    def nll_batch(self, pairs: Sequence[tuple[str, str]]) -> list[TokenNLL]:
        """``(prompt, target)`` pairs; an empty prompt scores the target alone (after BOS)."""
        torch = self.torch
        rows = []
        for prompt, target in pairs:
            context = self._ids(prompt, bos=True)
            answer = self._ids(target, bos=False)
            if not context:  # a tokenizer without BOS: the first answer token goes unscored
                context, answer = answer[:1], answer[1:]
            rows.append((context, answer))
        width = max(len(c) + len(a) for c, a in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        labels = torch.full((len(rows), width), -100, dtype=torch.long)
        for i, (context, answer) in enumerate(rows):
            tokens = context + answer
            ids[i, : len(tokens)] = torch.tensor(tokens)
            mask[i, : len(tokens)] = 1
            labels[i, len(context) : len(tokens)] = torch.tensor(answer, dtype=torch.long)
        with torch.inference_mode():
            logits = self.model(
                input_ids=ids.to(self.device), attention_mask=mask.to(self.device)
            ).logits.float()
        shifted = logits[:, :-1]
        targets = labels[:, 1:].to(self.device)
        losses = torch.nn.functional.cross_entropy(
            shifted.reshape(-1, shifted.shape[-1]),
            targets.reshape(-1),
            ignore_index=-100,
            reduction="none",
        ).view(targets.shape)
        sums = losses.sum(dim=1).double().cpu().tolist()
        return [TokenNLL(total, len(answer)) for total, (_, answer) in zip(sums, rows, strict=True)]


class RewardModel:
    """A sequence-classification reward model: one scalar per (prompt, response)
    rendered with the model's chat template."""

    def __init__(
        self, model: str, *, device: str = "auto", dtype: str = "auto", max_length: int = 4096
    ) -> None:
        torch, transformers = _torch_and_transformers("the reward-model filter")
        self.torch = torch
        self.device = pick_device(torch, device)
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(model)
        self.model = transformers.AutoModelForSequenceClassification.from_pretrained(
            model, dtype=_dtype(torch, dtype, self.device)
        ).to(self.device)
        self.model.eval()
        self.max_length = max_length
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id

    def render(self, prompt: str, response: str, system: str | None = None) -> str:
        messages = [{"role": "system", "content": system}] if system else []
        messages += [
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": response},
        ]
        if self.tokenizer.chat_template:
            return self.tokenizer.apply_chat_template(messages, tokenize=False)
        return f"{prompt}\n\n{response}"

    def rewards(self, conversations: Sequence[tuple[str, str, str | None]]) -> list[float]:
        torch = self.torch
        texts = [self.render(p, r, s) for p, r, s in conversations]
        encoded = self.tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=self.max_length,
            add_special_tokens=False,
            return_tensors="pt",
        ).to(self.device)
        with torch.inference_mode():
            logits = self.model(**encoded).logits.float()
        return logits[:, 0].cpu().tolist()


def _dtype(torch: Any, dtype: str, device: str) -> Any:
    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return getattr(torch, dtype)
