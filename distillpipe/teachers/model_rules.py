"""What each model family takes on the wire: one table, shipped as data.

``model_rules.yaml`` holds a row per model family and provider, matched by the
longest model-name prefix (as ``prices.yaml`` is); the config's
``teacher.model_rules`` adds or replaces rows and is matched first. A row says
how the token limit is spelled, which sampling parameters the model does not
take (``drop``: left out whatever their value; ``refuse``: setting one is a
config error), the ``reasoning_effort`` values it accepts, whether it can
think. A model no row matches takes everything, as before reasoning models.

The backends build their request bodies from :meth:`ModelRule.sent`, and the
cache key hashes the same dict, so what a model is never sent cannot make two
keys differ.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from importlib.resources import files
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from distillpipe.teachers.base import SamplingParams

SamplingKey = Literal[
    "temperature", "top_p", "presence_penalty", "frequency_penalty", "stop", "top_logprobs"
]
# A refused parameter may still be given at the value that asks for nothing.
_NEUTRAL: dict[str, Any] = {
    "temperature": 1.0,
    "top_p": 1.0,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
    "stop": [],
    "top_logprobs": None,
}


class ModelRule(BaseModel):
    """One model family's row of ``model_rules.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_tokens_key: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    drop: tuple[SamplingKey, ...] = Field((), description="never sent, whatever their value")
    refuse: tuple[SamplingKey, ...] = Field((), description="setting one is a config error")
    reasoning_effort: tuple[str, ...] = Field(
        (), description="the values teacher.reasoning_effort may take; none: not accepted"
    )
    thinking: bool = Field(False, description="extended thinking (teacher.thinking_budget)")
    chat_only: bool = Field(False, description="no raw-prompt completions")

    def sent(self, params: SamplingParams, drop: Iterable[str] = ()) -> dict[str, Any]:
        """``params`` as the request carries them: what this rule (and ``drop``) leave out
        is gone. The backends build bodies from it; the cache key hashes it."""
        gone = {*self.drop, *drop}
        return {key: value for key, value in params.as_dict().items() if key not in gone}

    def refusal(self, sent: Mapping[str, Any], model: str) -> tuple[str, str] | None:
        """The first refused parameter ``sent`` sets: (its name, why)."""
        for key in self.refuse:
            neutral = _NEUTRAL[key]
            if key in sent and sent[key] != neutral:
                hint = "leave it out" if neutral in (None, []) else f"leave it at {neutral}"
                return key, f"{model} does not accept {key}; {hint} (or see teacher.model_rules)"
        return None


PLAIN = ModelRule()


@functools.cache
def builtin_rules() -> dict[str, dict[str, ModelRule]]:
    text = files("distillpipe.teachers").joinpath("model_rules.yaml").read_text()
    return {
        provider: {prefix: ModelRule(**(row or {})) for prefix, row in table.items()}
        for provider, table in yaml.safe_load(text).items()
    }


def find_rule(
    provider: str, model: str, overrides: Mapping[str, ModelRule] | None = None
) -> ModelRule:
    """The row of the longest model-name prefix, config rows first; PLAIN when none."""
    for table in (overrides or {}, builtin_rules().get(provider, {})):
        matches = [prefix for prefix in table if model.startswith(prefix)]
        if matches:
            return table[max(matches, key=len)]
    return PLAIN
