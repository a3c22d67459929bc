"""Reward: a Hugging Face sequence-classification reward model (Skywork-Reward,
ArmoRM, OpenAssistant's deberta RMs ...) through transformers, batched, its
input built as its card says (the chat template, else the question/answer text
pair with the tokenizer's special tokens; models that ship their own code need
``trust_remote_code``); or an LLM judge through any teacher backend, with
the rubric in ``prompts/filters/judge.{chat,completion}.jinja`` (a 1–10 rating;
an unparseable reply is judged unparseable, not 0).

Every sample is scored. With n ≥ 2 the best becomes ``selection.chosen`` and
the worst ``selection.rejected`` (for DPO pairs) when they differ. min/max
bound the chosen sample's reward, absolute or as a percentile of the run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

from pydantic import Field

from distillpipe.errors import ConfigError
from distillpipe.filters.base import (
    FilterOptions,
    Record,
    Threshold,
    ThresholdFilter,
    ThresholdOptions,
    Verdict,
)
from distillpipe.filters.judge import parse_rating
from distillpipe.prompts import prompts_for
from distillpipe.records import user_prompt
from distillpipe.teachers.base import Request, SamplingParams


class RewardOptions(ThresholdOptions):
    type: str = "reward"
    backend: Literal["transformers", "judge"] = "transformers"
    model: str | None = Field(None, description="transformers: a reward model name or folder")
    device: str = "auto"
    dtype: str = "auto"
    max_length: int = Field(4096, ge=16, description="transformers: tokens per conversation")
    trust_remote_code: bool = Field(
        False, description="transformers: run the code a model ships (ArmoRM); trusted models only"
    )
    template: str = Field("judge", description="judge: prompts/filters/<template>.*.jinja")
    max_tokens: int = Field(256, ge=1, description="judge: tokens for the rationale and rating")
    on_unparseable: Literal["reject", "keep"] = "reject"
    teacher: str | None = Field(
        None, description="judge: the `teachers:` member that judges (default: the first)"
    )
    batch_size: int = Field(16, ge=1)

    def optional_modules(self) -> dict[str, str]:
        if self.backend == "transformers":
            return {"torch": "hf", "transformers": "hf"}
        return {}

    def cannot_judge_samples(self) -> str | None:
        for key in ("min", "max"):
            threshold = Threshold.parse(getattr(self, key))
            if threshold is not None and threshold.percentile is not None:
                return f"`{key}` is a percentile of the whole run; a single sample needs a number"
        if self.min is None and self.max is None:
            return "it needs a `min` or `max` reward that a sample must meet"
        return None

    def teacher_params(self) -> SamplingParams | None:
        if self.backend != "judge":
            return None
        return SamplingParams(temperature=0.0, max_tokens=self.max_tokens)


class RewardFilter(ThresholdFilter):
    type: ClassVar[str] = "reward"
    Options = RewardOptions
    options: RewardOptions
    metric: ClassVar[str] = "reward"

    def __init__(self, options: FilterOptions, config: Any = None) -> None:
        super().__init__(options, config)
        if self.options.backend == "transformers" and not self.options.model:
            raise ConfigError("filter reward: backend transformers needs `model`")
        self._model: Any = None

    @property
    def uses_teacher(self) -> bool:  # type: ignore[override]
        return self.options.backend == "judge"

    # -- transformers -------------------------------------------------------
    def load(self) -> Any:
        if self._model is None:
            from distillpipe.scoring.transformers import NeedsRemoteCode, RewardModel

            options = self.options
            try:
                self._model = RewardModel(
                    options.model or "", device=options.device, dtype=options.dtype,
                    max_length=options.max_length, trust_remote_code=options.trust_remote_code,
                )  # fmt: skip
            except NeedsRemoteCode as exc:
                where = self.config_path()
                option = f"{where}.trust_remote_code" if where else "trust_remote_code"
                raise ConfigError(
                    f"{where or f'filter {self.name}'}: the reward model {exc.model} runs its own "
                    f"code ({exc.code}); to run it, set {option}: true (only for a model you trust)"
                ) from None
        return self._model

    def score(self, records: Sequence[Record]) -> list[Any]:
        if self.options.backend == "judge":
            raise RuntimeError("the judge backend scores through ascore() with a dispatcher")
        conversations, owners = [], []
        for index, record in enumerate(records):
            for response in record.get("responses") or []:
                conversations.append(
                    (user_prompt(record), response.get("text") or "", record.get("system"))
                )
                owners.append(index)
        rewards = self.load().rewards(conversations) if conversations else []
        per_record: list[list[float | None]] = [[] for _ in records]
        for owner, reward in zip(owners, rewards, strict=True):
            per_record[owner].append(round(reward, 6))
        return [_summary(values) for values in per_record]

    # -- judge ----------------------------------------------------------------
    async def ascore(self, records: Sequence[Record]) -> list[Any]:
        if self.options.backend != "judge":
            return self.score(records)
        if self._dispatcher is None:
            raise RuntimeError("the judge backend needs attach_dispatcher() first")
        requests, owners = [], []
        for index, record in enumerate(records):
            for sample, response in enumerate(record.get("responses") or []):
                requests.append(self._judge_request(record, sample, response.get("text") or ""))
                owners.append(index)
        completions = await self._dispatcher.resolve(requests) if requests else []
        per_record: list[list[float | None]] = [[] for _ in records]
        for owner, (completion,) in zip(owners, completions, strict=True):
            per_record[owner].append(parse_rating(completion.text))
        return [_summary(values) for values in per_record]

    def _judge_request(self, record: Record, sample: int, response: str) -> Request:
        assert self._dispatcher is not None
        values = {
            "instruction": record["instruction"],
            "input": record.get("input", ""),
            "response": response,
        }
        params = self.options.teacher_params()
        assert params is not None  # a judge
        request_id = f"{record['id']}:{self.name}:{sample}"
        chat = self._dispatcher.teacher.mode == "chat"
        variant = "chat" if chat else "completion"
        text = prompts_for(self.config).render(
            f"filters/{self.options.template}.{variant}.jinja", **values
        )
        if chat:
            message = {"role": "user", "content": text.strip()}
            return Request(id=request_id, params=params, messages=(message,))
        return Request(id=request_id, params=params, prompt=text)

    # -- decision -----------------------------------------------------------------
    def value(self, score: Any) -> float | None:
        return None if score is None else score["reward"]

    def passing(self, score: Any) -> list[bool] | None:
        """A sample passes when it has a reward within [min, max] (absolute numbers)."""
        if score is None:
            return None
        return [value is not None and self.check(value) is None for value in score["rewards"]]

    def decide(self, record: Record, score: Any) -> Verdict:
        if score is None:
            return Verdict.rejected("no responses to score")
        if score["reward"] is None:
            if self.options.on_unparseable == "keep":
                return Verdict.kept(score)
            return Verdict.rejected("judge rating unparseable for every sample", score)
        reason = self.check(score["reward"])
        if reason:
            return Verdict.rejected(reason, score)
        chosen, rejected = score["best"], score["worst"]
        return Verdict.kept(
            score,
            {
                "chosen": chosen,
                "rejected": rejected if rejected != chosen else None,
                "by": self.name,
            },
        )

    def close(self) -> None:
        self._model = None


def _summary(values: list[float | None]) -> dict[str, Any] | None:
    if not values:
        return None
    rated = [(v, i) for i, v in enumerate(values) if v is not None]
    if not rated:
        return {"rewards": values, "reward": None, "best": None, "worst": None}
    best = max(rated, key=lambda pair: (pair[0], -pair[1]))
    worst = min(rated, key=lambda pair: (pair[0], pair[1]))
    return {"rewards": values, "reward": best[0], "best": best[1], "worst": worst[1]}
