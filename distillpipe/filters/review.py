"""The reviewer's decisions (``distillpipe review``), applied on the next run.

Reads ``review.jsonl`` (the last decision per record wins) and, for each record a
person decided on:

    reject   the record goes to the rejected file, reason ``reviewer: <tag>: <note>``
    edit     the edited text becomes a new response (``provenance: human-edited``,
             ``model: human``) and the chosen sample; the edited one becomes
             ``selection.rejected`` (a real preference: DPO export pairs them)
    pick     the picked sample becomes ``selection.chosen``, the former choice rejected
    accept   kept; with ``overrule`` it also keeps a record an automatic filter
             rejected (the stage asks this filter on every reject: ``overruled``)
    skip     nothing changes

A decision whose ``reviewed`` hash no longer matches the record's responses (a
later run regenerated them) is stale: counted, never applied. The decisions
file's content is in the filter stage's hash (``files_read``), so ``run`` redoes
filter and export when it changes. Put the filter last: later filters would
judge the reviewer's edit instead of the teacher's answer.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from distillpipe.filters.base import Filter, FilterOptions, Record, Verdict
from distillpipe.review.decisions import (
    DECISIONS_FILE,
    HUMAN_EDITED,
    Decision,
    latest_decisions,
    responses_hash,
)

if TYPE_CHECKING:
    from distillpipe.config import Config

HUMAN_MODEL = "human"


class ReviewOptions(FilterOptions):
    decisions: str | None = Field(
        None,
        description="the decisions file; default: <run_dir>/<name>/review.jsonl, where "
        "`distillpipe run` keeps the run (relative paths: to the working folder)",
    )
    overrule: bool | list[str] = Field(
        False,
        description="a human accept, edit or pick keeps a record these filters rejected "
        "(true: any filter)",
    )

    def decisions_path(self, config: Config | None) -> Path:
        if self.decisions is not None:
            return Path(self.decisions).expanduser()
        if config is None:
            return Path(DECISIONS_FILE)
        return Path(config.run_dir) / config.name / DECISIONS_FILE

    def files_read(self, config: Config) -> list[Path]:
        return [self.decisions_path(config)]


class ReviewFilter(Filter):
    type: ClassVar[str] = "review"
    Options: ClassVar[type[FilterOptions]] = ReviewOptions
    options: ReviewOptions
    can_overrule: ClassVar[bool] = True

    def __init__(self, options: FilterOptions, config: Config | None = None) -> None:
        super().__init__(options, config)
        self._decisions: dict[str, Decision] | None = None
        self.applied: Counter[str] = Counter()

    def decisions(self) -> dict[str, Decision]:
        """Loaded once per process, on first use."""
        if self._decisions is None:
            self._decisions = latest_decisions(self.options.decisions_path(self.config))
        return self._decisions

    def score(self, records: Sequence[Record]) -> list[Any]:
        """What a reviewer of each record saw (``responses_hash``): pure, so it can run
        on a worker; the decisions file is read only where ``decide`` runs (the driver)."""
        return [responses_hash(record) for record in records]

    def value(self, score: Any) -> float | None:
        return None

    def current(self, record: Record, seen: str | None = None) -> Decision | None:
        """The record's last decision, unless it is a skip or about other responses."""
        decision = self.decisions().get(str(record.get("id")))
        if decision is None or decision.decision == "skip":
            return None
        if decision.reviewed is not None and decision.reviewed != (seen or responses_hash(record)):
            return None
        return decision

    def overrules(self, record: Record, rejected_by: str) -> bool:
        overrule = self.options.overrule
        if not overrule or (isinstance(overrule, list) and rejected_by not in overrule):
            return False
        decision = self.current(record)
        if decision is None or not decision.keeps:
            return False
        self.applied["overruled"] += 1
        return True

    def decide(self, record: Record, score: Any) -> Verdict:
        made = self.decisions().get(str(record.get("id")))
        if made is None or made.decision == "skip":
            return Verdict.kept()
        decision = self.current(record, score)
        if decision is None:
            self.applied["stale"] += 1
            return Verdict.kept({"decision": made.decision, "stale": True})
        kept: dict[str, Any] = {"decision": decision.decision}
        kept |= {k: v for k, v in (("reason", decision.reason), ("note", decision.note)) if v}
        if decision.decision == "reject":
            self.applied["reject"] += 1
            return Verdict.rejected(decision.reason_text(), kept)
        responses = record.get("responses") or []
        chosen = (record.get("selection") or {}).get("chosen")
        chosen = chosen if isinstance(chosen, int) and 0 <= chosen < len(responses) else 0
        if decision.decision == "pick":
            if decision.chosen is None or decision.chosen >= len(responses):
                self.applied["stale"] += 1
                return Verdict.kept({**kept, "stale": True})
            self.applied["pick"] += 1
            previous = chosen if chosen != decision.chosen else None
            selection = {"chosen": decision.chosen, "rejected": previous, "by": self.name}
            return Verdict.kept({**kept, "chosen": decision.chosen}, selection)
        if decision.decision == "edit":
            self.applied["edit"] += 1
            edited = decision.chosen if decision.chosen is not None else chosen
            record["responses"] = [*responses, self._edited(decision, len(responses), edited)]
            rejected = edited if edited < len(responses) else None
            selection = {"chosen": len(responses), "rejected": rejected, "by": self.name}
            return Verdict.kept({**kept, "edited": edited}, selection)
        self.applied["accept"] += 1
        return Verdict.kept(kept)

    @staticmethod
    def _edited(decision: Decision, sample: int, edited: int) -> dict[str, Any]:
        return {
            "text": decision.text,
            "model": HUMAN_MODEL,
            "finish_reason": "stop",
            "usage": {},
            "sample": sample,
            "provenance": HUMAN_EDITED,
            "edited_from": edited,
        }

    def stats(self) -> dict[str, Any]:
        return {"decisions": len(self._decisions or {}), "applied": dict(self.applied)}
