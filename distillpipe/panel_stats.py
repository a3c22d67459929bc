"""Per-teacher accounting of a panel run (``teachers:``): what each member was asked
and what it cost (from its dispatcher, during a stage), and how often its sample
was the one chosen (from the records, after selection).

    calls, cache_hits, teacher_calls, prompt_tokens, completion_tokens, cost_usd,
    teacher_seconds, latency_s (teacher seconds per call sent), failures (failed
    attempts: retried ones and those that ended the stage)

    wins: records (that hold a sample of the member), chosen (records whose chosen
    sample is the member's), win_rate (chosen / records with a choice)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from distillpipe.dispatch import Dispatcher, DispatchStats

TEACHER = "teacher"  # the responses[] field naming the panel member that answered


def merged_stats(dispatchers: Iterable[Dispatcher]) -> DispatchStats:
    total = DispatchStats()
    for dispatcher in dispatchers:
        total = total + dispatcher.stats
    return total


def member_stats(
    dispatchers: Mapping[str, Dispatcher], failures: Mapping[str, int] | None = None
) -> dict[str, dict[str, Any]]:
    """Each member's calls, cache hits, tokens, cost, latency and failures in a stage."""
    failures = failures or {}
    out = {}
    for name, dispatcher in dispatchers.items():
        stats = dispatcher.stats
        sent = stats.teacher_calls
        out[name] = {
            "calls": stats.calls,
            "cache_hits": stats.cache_hits,
            "teacher_calls": sent,
            "prompt_tokens": stats.prompt_tokens,
            "completion_tokens": stats.completion_tokens,
            "cost_usd": round(stats.cost_usd, 6),
            "teacher_seconds": round(stats.teacher_seconds, 3),
            "latency_s": round(stats.teacher_seconds / sent, 3) if sent else None,
            "failures": failures.get(name, 0) + int(getattr(dispatcher.teacher, "retries", 0)),
        }
    return out


def chosen_teacher(record: Mapping[str, Any]) -> str | None:
    """The member whose sample the record's selection chose (the first without one)."""
    responses = record.get("responses") or []
    if not responses:
        return None
    chosen = (record.get("selection") or {}).get("chosen")
    index = chosen if isinstance(chosen, int) and 0 <= chosen < len(responses) else 0
    return responses[index].get(TEACHER)


class WinCounter:
    """How often each member answered a record and how often its sample was chosen."""

    def __init__(self) -> None:
        self.answered: Counter[str] = Counter()
        self.chosen: Counter[str] = Counter()
        self.decided = 0

    def add(self, record: Mapping[str, Any]) -> None:
        names = {r.get(TEACHER) for r in record.get("responses") or []} - {None}
        self.answered.update(names)
        winner = chosen_teacher(record)
        if winner is not None:
            self.chosen[winner] += 1
            self.decided += 1

    def as_dict(self) -> dict[str, dict[str, Any]]:
        chosen, decided = self.chosen, self.decided
        return {
            name: {
                "records": self.answered[name],
                "chosen": chosen[name],
                "win_rate": round(chosen[name] / decided, 6) if decided else 0.0,
            }
            for name in sorted(self.answered, key=lambda n: (-chosen[n], n))
        }


def win_counts(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    counter = WinCounter()
    for record in records:
        counter.add(record)
    return counter.as_dict()


def run_member_stats(manifest: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Every stage's per-member accounting in a manifest, summed per member."""
    totals: dict[str, dict[str, Any]] = {}
    for entry in ((manifest or {}).get("stages") or {}).values():
        add_member_stats(totals, (entry.get("stats") or {}).get("teachers") or {})
    return totals


def teacher_rows(
    members: Iterable[Mapping[str, Any]],
    totals: Mapping[str, Mapping[str, Any]],
    wins: Mapping[str, Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """One row per panel member (its config block, its run totals, its wins)."""
    rows = []
    for block in members:
        name = block["name"]
        row = {"name": name, "backend": block.get("backend"), "model": block.get("model")}
        row |= {key: None for key in ("calls", "cache_hits", "teacher_calls")}
        row |= dict(totals.get(name) or {})
        won = wins.get(name) or {}
        row |= {"records": won.get("records", 0), "chosen": won.get("chosen", 0)}
        row["win_rate"] = won.get("win_rate", 0.0)
        rows.append(row)
    return rows


def add_member_stats(
    into: dict[str, dict[str, Any]], more: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Stages' per-member stats summed (the run's totals per member)."""
    for name, row in more.items():
        total = into.setdefault(name, {})
        for key, value in row.items():
            if isinstance(value, int | float) and key != "latency_s":
                total[key] = total.get(key, 0) + value
    for total in into.values():
        sent = total.get("teacher_calls", 0)
        seconds = total.get("teacher_seconds", 0.0)
        total["latency_s"] = round(seconds / sent, 3) if sent else None
    return into
