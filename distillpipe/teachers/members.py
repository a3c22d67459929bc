"""A panel member as the config names it: ``teachers:`` is a list of teacher blocks, each
with a ``name`` and, beside the backend's own options, the member's place in the panel.

    teachers:
      - name: small            # unique; responses carry it as `teacher`
        backend: llamacpp      # the rest of the block is the backend's Options
        mode: completion
      - name: server
        backend: openai
        base_url: http://127.0.0.1:8080/v1
        n: 2                   # samples per record (default: generate.n)
        share: 0.25            # answer this fraction of the records (seeded by record id;
                               # 0: answers none, e.g. a cheap model for self_instruct only)
        weight: 2.0            # its vote in `consistency` with `across: teachers`
        max_cost: 1.5          # USD this member may spend (the run's --max-cost still holds)
        sampling: {temperature: 0.2}   # generate's sampling, overridden for this member

A plain ``teacher:`` block is a panel of one (``single_member``) whose requests carry no
member name, so its cache keys and stage hashes are those of a run without panels.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny

from distillpipe.teachers.base import SamplingParams, TeacherOptions

MEMBER_KEYS = ("name", "n", "share", "weight", "max_cost", "sampling")
NAME_PATTERN = r"^[A-Za-z0-9._-]+$"


class SamplingOverrides(BaseModel):
    """The generate sampling parameters a member sends otherwise than ``generate:``."""

    model_config = ConfigDict(extra="forbid")

    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)

    def apply(self, params: SamplingParams) -> SamplingParams:
        changed = {k: v for k, v in self.model_dump().items() if v is not None}
        return replace(params, **changed) if changed else params


class PanelMember(BaseModel):
    """One ``teachers:`` item: its name, its teacher block and its place in the panel."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    teacher: SerializeAsAny[TeacherOptions]
    n: int | None = Field(None, ge=1, le=128, description="samples per record; default generate.n")
    share: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="the fraction of records it answers (seeded); 0: none, a member that "
        "only writes instructions or judges",
    )
    weight: float = Field(1.0, gt=0.0, description="its vote across teachers")
    max_cost: float | None = Field(None, gt=0, description="USD this member may spend")
    sampling: SamplingOverrides = Field(default_factory=SamplingOverrides)

    @property
    def answers(self) -> bool:
        """Whether generate asks it at all (``share: 0``: it only serves other stages)."""
        return self.share != 0

    def public_block(self) -> dict[str, Any]:
        """The item as the config wrote it: the member keys beside the teacher's options."""
        dumped = self.model_dump(mode="json")
        return {**dumped.pop("teacher"), **dumped}


def split_member(raw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A ``teachers:`` item as (member keys, the teacher block)."""
    member = {key: raw[key] for key in MEMBER_KEYS if key in raw}
    block = {key: value for key, value in raw.items() if key not in MEMBER_KEYS}
    return member, block


def single_member(options: TeacherOptions) -> PanelMember:
    """A plain ``teacher:`` block as a panel of one (named after its backend)."""
    return PanelMember(name=options.backend, teacher=options)
