"""The sample a reviewer sees: seeded, stratified, and the same every time it is drawn.

Three strata, each a share of the sample: records the filter stage ``kept``, records
it ``rejected`` (the share split evenly between the filters that rejected), and
``borderline`` records, whose score lies nearest one of a filter's numeric
thresholds (within BORDERLINE_BAND of the spread of that filter's scores, nearest
first). A stratum that runs
short leaves its places to the others. Within a stratum the order is a hash of
the seed, the stratum and the record id: the same run and seed give the same
sample, whatever order the files list the records in, and a reviewer's decisions
do not move records between strata (a human reject still counts as kept by the
automatic filters).

Records are read twice, streaming: once to choose (ids and scores only), once to
fetch what was chosen, with the instruction of each record's lineage parent.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distillpipe.errors import InputError
from distillpipe.review.agreement import automatic_rejection, filter_verdict
from distillpipe.review.decisions import responses_hash
from distillpipe.run_data import (
    RunData,
    StageView,
    filter_configs,
    load_stages,
    records_in,
    thresholds_for,
    value_readers,
)

DEFAULT_SHARES = {"kept": 0.5, "rejected": 0.3, "borderline": 0.2}
BORDERLINE_BAND = 0.1  # within this share of a filter's score spread from a threshold
STRATA = ("borderline", "rejected", "kept")  # the order places are filled in


@dataclass
class RunFilters:
    """The run's filters in config order: automatic ones and the review filter(s)."""

    names: list[str]
    types: dict[str, str]
    review: list[str]
    thresholds: dict[str, dict[str, float]]
    data: RunData  # reads each filter's score as a number

    @property
    def automatic(self) -> list[str]:
        return [name for name in self.names if name not in self.review]


@dataclass
class Candidate:
    id: str
    rejected_by: str | None
    values: dict[str, float] = field(default_factory=dict)


def parse_shares(text: str | None) -> dict[str, float]:
    """``kept=0.5,rejected=0.3,borderline=0.2`` (any subset; normalised to sum to 1)."""
    if not text:
        return dict(DEFAULT_SHARES)
    shares = dict.fromkeys(DEFAULT_SHARES, 0.0)
    for part in text.split(","):
        key, sep, raw = part.partition("=")
        key = key.strip()
        if not sep or key not in shares:
            raise InputError(f"--shares {text!r}: expected kept=, rejected=, borderline= numbers")
        try:
            shares[key] = float(raw)
        except ValueError:
            raise InputError(f"--shares {text!r}: {raw!r} is not a number") from None
        if shares[key] < 0:
            raise InputError(f"--shares {text!r}: {key} is negative")
    total = sum(shares.values())
    if total <= 0:
        raise InputError(f"--shares {text!r}: the shares add up to nothing")
    return {key: value / total for key, value in shares.items()}


def run_filters(manifest: dict[str, Any], stages: list[StageView]) -> RunFilters:
    config = manifest.get("config") or {}
    entries = filter_configs(config)
    names = [str(e.get("name") or e.get("type")) for e in entries]
    types = {str(e.get("name") or e.get("type")): str(e.get("type")) for e in entries}
    filter_stage = next((s for s in stages if s.name == "filter"), None)
    stats = (filter_stage.stats.get("filters") or {}) if filter_stage else {}
    thresholds = {name: thresholds_for(name, config, stats.get(name) or {}) for name in names}
    data = RunData(manifest, stages, readers=value_readers(config))
    review = [name for name in names if types[name] == "review"]
    return RunFilters(names, types, review, thresholds, data)


def source_files(stages: list[StageView]) -> tuple[Path, Path | None]:
    """The records to review: the filter stage's output and rejected file, else the
    generate stage's output (a run without filters)."""
    by_name = {stage.name: stage for stage in stages}
    if "filter" in by_name:
        return by_name["filter"].output, by_name["filter"].rejected
    if "generate" in by_name:
        return by_name["generate"].output, None
    raise InputError("the run has neither a filter nor a generate stage to review")


def records_of(kept: Path, rejected: Path | None) -> Iterator[dict[str, Any]]:
    yield from records_in(kept)
    if rejected is not None:
        yield from records_in(rejected)


def order_key(seed: int, stratum: str, record_id: str) -> str:
    return hashlib.sha256(f"{seed}\x1f{stratum}\x1f{record_id}".encode()).hexdigest()


def choose(
    candidates: list[Candidate],
    filters: RunFilters,
    size: int,
    shares: dict[str, float],
    seed: int,
) -> dict[str, str]:
    """record id -> its stratum (``kept``, ``rejected:<filter>``, ``borderline:<filter>``)."""
    quota = {name: round(size * shares[name]) for name in ("rejected", "borderline")}
    quota["kept"] = max(0, size - sum(quota.values()))
    pools: dict[str, list[list[tuple[str, str]]]] = {
        "kept": [_ordered(seed, "kept", [c.id for c in candidates if c.rejected_by is None])],
        "rejected": [],
        "borderline": [],
    }
    by_filter: dict[str, list[str]] = defaultdict(list)
    for candidate in candidates:
        if candidate.rejected_by is not None:
            by_filter[candidate.rejected_by].append(candidate.id)
    for name in [n for n in filters.names if n in by_filter] + sorted(
        set(by_filter) - set(filters.names)
    ):
        pools["rejected"].append(_ordered(seed, f"rejected:{name}", by_filter[name]))
    for name in filters.automatic:
        if ranked := _borderline(candidates, name, filters.thresholds.get(name) or {}, seed):
            pools["borderline"].append(ranked)
    chosen: dict[str, str] = {}
    for stratum in STRATA:
        _take(pools[stratum], quota[stratum], chosen)
    left = size - len(chosen)
    for stratum in STRATA:  # places a short stratum left
        left -= _take(pools[stratum], left, chosen)
    return chosen


def _ordered(seed: int, stratum: str, ids: list[str]) -> list[tuple[str, str]]:
    return [(i, stratum) for i in sorted(ids, key=lambda i: order_key(seed, stratum, i))]


def _borderline(
    candidates: list[Candidate], name: str, thresholds: dict[str, float], seed: int
) -> list[tuple[str, str]]:
    scored = [(c.id, c.values[name]) for c in candidates if name in c.values]
    if not thresholds or len(scored) < 2:
        return []
    values = [value for _, value in scored]
    spread = (max(values) - min(values)) or 1.0
    stratum = f"borderline:{name}"

    def distance(value: float) -> float:
        return min(abs(value - bound) for bound in thresholds.values()) / spread

    near = [(distance(v), order_key(seed, stratum, i), i) for i, v in scored]
    return [(i, stratum) for d, _, i in sorted(near) if d <= BORDERLINE_BAND]


def _take(pools: list[list[tuple[str, str]]], count: int, chosen: dict[str, str]) -> int:
    """Round-robin over ``pools`` until ``count`` new ids are chosen; returns how many."""
    taken = 0
    cursors = [0] * len(pools)
    while taken < count and any(cursors[i] < len(pool) for i, pool in enumerate(pools)):
        for index, pool in enumerate(pools):
            while cursors[index] < len(pool) and pool[cursors[index]][0] in chosen:
                cursors[index] += 1
            if cursors[index] < len(pool) and taken < count:
                record_id, stratum = pool[cursors[index]]
                chosen[record_id] = stratum
                cursors[index] += 1
                taken += 1
    return taken


def draw_sample(
    run_dir: Path, size: int = 50, shares: dict[str, float] | None = None, seed: int | None = None
) -> dict[str, Any]:
    """The sample as the page receives it: the run's name, its filters and the items."""
    manifest, stages = load_stages(run_dir)
    filters = run_filters(manifest, stages)
    seed = int((manifest.get("config") or {}).get("seed", 0)) if seed is None else seed
    kept, rejected = source_files(stages)
    candidates = [
        Candidate(
            str(record["id"]),
            automatic_rejection(record, filters.review),
            _values(record, filters),
        )
        for record in records_of(kept, rejected)
    ]
    chosen = choose(candidates, filters, size, shares or DEFAULT_SHARES, seed)
    records = {str(r["id"]): r for r in records_of(kept, rejected) if str(r["id"]) in chosen}
    parents = _parents(
        stages, {str((r.get("origin") or {}).get("parent_id")) for r in records.values()}
    )
    ids = sorted(chosen, key=lambda i: order_key(seed, "order", i))
    items = [_item(records[i], chosen[i], filters, parents) for i in ids if i in records]
    return {
        "run": manifest.get("name", run_dir.name),
        "seed": seed,
        "filters": [{"name": n, "type": filters.types[n]} for n in filters.names],
        "items": items,
    }


def _values(record: dict[str, Any], filters: RunFilters) -> dict[str, float]:
    reject = record.get("reject") or {}
    scores = record.get("scores") or {}
    values = {}
    for name in filters.automatic:
        raw = scores.get(name, reject.get("score") if reject.get("filter") == name else None)
        value = filters.data.score_value(name, raw)
        if value is not None:
            values[name] = value
    return values


def _parents(stages: list[StageView], wanted: set[str]) -> dict[str, str]:
    """The instruction of each wanted parent id, from the seed and evolve outputs."""
    found: dict[str, str] = {}
    for stage in stages:
        if stage.name not in ("seed", "evolve") or not wanted - set(found):
            continue
        for record in records_in(stage.output):
            if str(record["id"]) in wanted:
                found[str(record["id"])] = record["instruction"]
    return found


def _item(
    record: dict[str, Any], stratum: str, filters: RunFilters, parents: dict[str, str]
) -> dict[str, Any]:
    reject = record.get("reject") or {}
    scores = record.get("scores") or {}
    overruled = {str(o.get("filter")): o for o in record.get("overruled") or []}
    verdicts = []
    for name in filters.names:
        verdict = filter_verdict(record, name)
        if name in filters.review:
            verdict = {"rejected": "rejected by the reviewer", "kept": "decided"}.get(
                verdict, "no decision applied yet"
            )
        score = scores.get(name, reject.get("score") if reject.get("filter") == name else None)
        reason = reject.get("reason") if reject.get("filter") == name else None
        if name in overruled:
            verdict, reason = "overruled by the reviewer", overruled[name].get("reason")
        verdicts.append({"name": name, "verdict": verdict, "score": score, "reason": reason or ""})
    responses = record.get("responses") or []
    origin = record.get("origin") or {}
    parent_id = origin.get("parent_id")
    selection = record.get("selection") or {}
    chosen = selection.get("chosen")
    return {
        "id": str(record["id"]),
        "stratum": stratum,
        "instruction": record.get("instruction", ""),
        "input": record.get("input") or "",
        "system": record.get("system") or "",
        "responses": [
            {
                "sample": index,
                "text": r.get("text") or "",
                "reasoning": r.get("reasoning") or "",
                "model": r.get("model") or "",
                "finish_reason": r.get("finish_reason") or "",
                "provenance": r.get("provenance") or "",
            }
            for index, r in enumerate(responses)
        ],
        "chosen": chosen if isinstance(chosen, int) and 0 <= chosen < len(responses) else 0,
        "pipeline": "rejected" if automatic_rejection(record, filters.review) else "kept",
        "filters": verdicts,
        "origin": {
            k: origin[k] for k in ("stage", "parent_id", "operator", "round") if k in origin
        },
        "parent": parents.get(str(parent_id), "") if parent_id else "",
        "reviewed": responses_hash(record),
    }
