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


class NeedsRemoteCode(Exception):
    """The model ships its own Python code (``auto_map``) and ``trust_remote_code`` is off."""

    def __init__(self, model: str, code: str) -> None:
        super().__init__(f"{model} runs its own code ({code})")
        self.model = model
        self.code = code


class RewardModel:
    """A sequence-classification reward model: one scalar per (prompt, response),
    its input built the way the model's card builds it.

    - A tokenizer with a chat template (Skywork-Reward, ArmoRM, most Llama-based
      RMs): the conversation through ``apply_chat_template``. The template writes
      the special tokens itself (BOS), so tokenizing adds none, as
      ``apply_chat_template(tokenize=True)`` does.
    - No chat template (OpenAssistant's deberta RMs): ``tokenizer(question,
      answer)``, the text pair with the tokenizer's special tokens
      (``[CLS] question [SEP] answer [SEP]``); a system prompt is not part of it.

    Models that ship their own code (ArmoRM's gating head) load only with
    ``trust_remote_code``; without it they raise :class:`NeedsRemoteCode` rather
    than load transformers' generic class for their architecture, whose untrained
    head would score noise.
    """

    def __init__(
        self,
        model: str,
        *,
        device: str = "auto",
        dtype: str = "auto",
        max_length: int = 4096,
        trust_remote_code: bool = False,
    ) -> None:
        torch, transformers = _torch_and_transformers("the reward-model filter")
        self.torch = torch
        self.device = pick_device(torch, device)
        trust = {"trust_remote_code": trust_remote_code}  # never None: that asks on stdin
        config = _refusing_remote_code(model, transformers.AutoConfig, **trust)
        own_class = (getattr(config, "auto_map", None) or {}).get(
            "AutoModelForSequenceClassification"
        )
        if own_class and not trust_remote_code:  # transformers would load its generic class
            raise NeedsRemoteCode(model, str(own_class))
        self.tokenizer = _refusing_remote_code(model, transformers.AutoTokenizer, **trust)
        self.model = transformers.AutoModelForSequenceClassification.from_pretrained(
            model, config=config, dtype=_dtype(torch, dtype, self.device), **trust
        ).to(self.device)
        self.model.eval()
        self.chat = bool(getattr(self.tokenizer, "chat_template", None))
        self.max_length = min(max_length, self.tokenizer.model_max_length)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id

    def render(self, prompt: str, response: str, system: str | None = None) -> str:
        """The conversation through the chat template (chat-template models only)."""
        messages = [{"role": "system", "content": system}] if system else []
        messages += [
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": response},
        ]
        return self.tokenizer.apply_chat_template(messages, tokenize=False)

    def encode(self, conversations: Sequence[tuple[str, str, str | None]]) -> Any:
        """The padded batch the model scores, on its device."""
        limits = {"padding": True, "truncation": True, "max_length": self.max_length}
        if self.chat:
            texts = [self.render(p, r, s) for p, r, s in conversations]
            encoded = self.tokenizer(texts, add_special_tokens=False, return_tensors="pt", **limits)
        else:
            questions = [prompt for prompt, _, _ in conversations]
            answers = [response for _, response, _ in conversations]
            encoded = self.tokenizer(questions, answers, return_tensors="pt", **limits)
        return encoded.to(self.device)

    def rewards(self, conversations: Sequence[tuple[str, str, str | None]]) -> list[float]:
        with self.torch.inference_mode():
            output = self.model(**self.encode(conversations))
        # ArmoRM's own class puts its preference score in `score`; the others in `logits`
        values = getattr(output, "score", None)
        if values is None:
            values = output.logits
        return values.float().reshape(values.shape[0], -1)[:, 0].cpu().tolist()


def _refusing_remote_code(model: str, auto_class: Any, **kwargs: Any) -> Any:
    """``auto_class.from_pretrained``, with transformers' refusal of a class it does not
    have (the model's own code, ``trust_remote_code`` off) as :class:`NeedsRemoteCode`."""
    try:
        return auto_class.from_pretrained(model, **kwargs)
    except ValueError as exc:
        if "trust_remote_code" in str(exc):
            kind = auto_class.__name__.removeprefix("Auto").lower()  # config, tokenizer
            raise NeedsRemoteCode(model, f"its own {kind} class") from None
        raise


def _dtype(torch: Any, dtype: str, device: str) -> Any:
    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return getattr(torch, dtype)
