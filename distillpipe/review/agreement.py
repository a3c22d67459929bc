"""How each automatic filter agrees with the reviewer, on the records a person reviewed.

A filter's verdict on a record is read from the record itself: ``rejected`` when
``reject.filter`` names it (or a human accept overruled its reject:
``overruled``), ``kept`` when it wrote ``scores.<name>``, ``not reached`` when an
earlier filter rejected the record first. A person's verdict is ``accept`` for
accept, edit and pick (the record belongs in the dataset) and ``reject`` for a
reject; skips count for neither. A filter's rejects are then scored like a
classifier of what people reject: precision = agreed rejects / its rejects,
recall = agreed rejects / the human rejects it saw.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distillpipe.review.decisions import DECISIONS_FILE, Decision, latest_decisions
from distillpipe.run_data import StageView, filter_configs, records_in

KEPT, REJECTED, NOT_REACHED = "kept", "rejected", "not reached"
EXAMPLES = 5
EXCERPT = 300


def overruled_filters(record: dict[str, Any]) -> list[str]:
    """The filters whose reject a human accept overruled (the review filter's note)."""
    return [str(o.get("filter")) for o in record.get("overruled") or [] if isinstance(o, dict)]


def filter_verdict(record: dict[str, Any], name: str) -> str:
    reject = record.get("reject") or {}
    if reject.get("filter") == name or name in overruled_filters(record):
        return REJECTED
    if name in (record.get("scores") or {}):
        return KEPT
    return NOT_REACHED


def automatic_rejection(record: dict[str, Any], review_names: Iterable[str]) -> str | None:
    """The automatic filter that rejected the record, whatever a reviewer decided since:
    a human reject is not an automatic one, an overruled reject still is."""
    rejecting = (record.get("reject") or {}).get("filter")
    if rejecting is not None and rejecting not in set(review_names):
        return str(rejecting)
    overruled = overruled_filters(record)
    return overruled[0] if overruled else None


@dataclass
class FilterAgreement:
    name: str
    # (filter verdict, human verdict) -> records
    table: Counter[tuple[str, str]] = field(default_factory=Counter)
    disagreements: list[dict[str, Any]] = field(default_factory=list)

    def count(self, verdict: str, human: str) -> int:
        return self.table[(verdict, human)]

    @property
    def reviewed(self) -> int:
        return sum(self.table.values())

    @property
    def agreed(self) -> int:
        return self.count(KEPT, "accept") + self.count(REJECTED, "reject")

    @property
    def precision(self) -> float | None:
        rejects = self.count(REJECTED, "accept") + self.count(REJECTED, "reject")
        return self.count(REJECTED, "reject") / rejects if rejects else None

    @property
    def recall(self) -> float | None:
        human_rejects = self.count(KEPT, "reject") + self.count(REJECTED, "reject")
        return self.count(REJECTED, "reject") / human_rejects if human_rejects else None


@dataclass
class ReviewSummary:
    decisions: int = 0  # records with a decision (the last one each)
    actions: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    filters: list[FilterAgreement] = field(default_factory=list)

    @property
    def top_reasons(self) -> list[tuple[str, int]]:
        return self.reasons.most_common()


def human_verdict(decision: Decision) -> str | None:
    if decision.decision == "reject":
        return "reject"
    return "accept" if decision.keeps else None


def summarise(
    records: Iterable[dict[str, Any]],
    decisions: dict[str, Decision],
    filter_names: Sequence[str],
) -> ReviewSummary:
    """The review section: ``records`` are the run's filter output and rejected records
    (each once), ``filter_names`` the automatic filters in config order."""
    summary = ReviewSummary(decisions=len(decisions))
    for decision in decisions.values():
        summary.actions[decision.decision] += 1
        if decision.decision == "reject" and decision.reason:
            summary.reasons[decision.reason] += 1
    agreements = {name: FilterAgreement(name) for name in filter_names}
    for record in records:
        decision = decisions.get(str(record.get("id")))
        human = human_verdict(decision) if decision is not None else None
        if human is None or decision is None:
            continue
        for name, agreement in agreements.items():
            verdict = filter_verdict(record, name)
            if verdict == NOT_REACHED:
                continue
            agreement.table[(verdict, human)] += 1
            disagrees = (verdict == KEPT) == (human == "reject")
            if disagrees and len(agreement.disagreements) < EXAMPLES:
                agreement.disagreements.append(_disagreement(record, name, verdict, decision))
    summary.filters = list(agreements.values())
    return summary


def _disagreement(
    record: dict[str, Any], name: str, verdict: str, decision: Decision
) -> dict[str, Any]:
    reject = record.get("reject") or {}
    overruled = next((o for o in record.get("overruled") or [] if o.get("filter") == name), {})
    filter_reason = reject.get("reason") if reject.get("filter") == name else None
    return {
        "id": record.get("id"),
        "instruction": str(record.get("instruction", ""))[:EXCERPT],
        "filter": verdict,
        "filter_reason": filter_reason or overruled.get("reason") or "",
        "human": decision.decision,
        "human_reason": decision.reason or "",
        "note": decision.note[:EXCERPT],
    }


def summarise_run(
    run_dir: Path, manifest: dict[str, Any], stages: list[StageView]
) -> ReviewSummary | None:
    """The run's review section; None when nobody reviewed it (no review.jsonl)."""
    decisions = latest_decisions(run_dir / DECISIONS_FILE)
    if not decisions:
        return None
    entries = filter_configs(manifest.get("config") or {})
    names = [str(e.get("name") or e.get("type")) for e in entries if e.get("type") != "review"]
    files = [path for s in stages if s.name == "filter" for path in (s.output, s.rejected)]
    records = (record for path in files for record in records_in(path))
    return summarise(records, decisions, names)
