"""A run directory read for the report: the manifest, and every stage's output and
rejected records, generically (any stage, any filter name found in ``scores``
or ``reject.filter``). Stage files are streamed; only lengths, scores and a
few examples are kept.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from distillpipe.conversations import assistant_responses, is_conversation
from distillpipe.errors import InputError
from distillpipe.exporters.select import chosen_index
from distillpipe.io import read_jsonl
from distillpipe.manifest import MANIFEST
from distillpipe.stages import registered_stages
from distillpipe.topic_tree import TREE_FILE, TopicTree

EXAMPLES_PER_FILTER = 3
EXCERPT = 400
THRESHOLD_WORDS = ("threshold", "min", "max")


@dataclass
class StageView:
    name: str
    entry: dict[str, Any]
    output: Path
    rejected: Path

    @property
    def stats(self) -> dict[str, Any]:
        return self.entry.get("stats") or {}

    @property
    def teacher(self) -> dict[str, Any]:
        return self.stats.get("teacher") or {}


@dataclass
class FilterView:
    name: str
    passed: dict[str, float] = field(default_factory=dict)
    rejected: dict[str, float] = field(default_factory=dict)
    rejected_elsewhere: dict[str, float] = field(default_factory=dict)  # by another filter
    kept_examples: list[dict[str, Any]] = field(default_factory=list)
    rejected_examples: list[dict[str, Any]] = field(default_factory=list)
    thresholds: dict[str, float] = field(default_factory=dict)


def load_stages(run_dir: Path) -> tuple[dict[str, Any], list[StageView]]:
    path = run_dir / MANIFEST
    if not path.is_file():
        raise InputError(f"{run_dir}: no {MANIFEST}; is this a run directory?")
    manifest = orjson.loads(path.read_bytes())
    entries = list((manifest.get("stages") or {}).items())
    if all(entry.get("started_at") is not None for _, entry in entries):
        entries.sort(key=lambda item: item[1]["started_at"])  # the order they ran in
    else:
        order = {stage.name: i for i, stage in enumerate(registered_stages())}
        entries.sort(key=lambda item: order.get(item[0], len(order)))
    views = [
        StageView(
            name,
            entry,
            run_dir / entry.get("output", f"{name}.jsonl"),
            run_dir / f"{name}.rejected.jsonl",
        )
        for name, entry in entries
    ]
    return manifest, views


def records_in(path: Path) -> Iterator[dict[str, Any]]:
    """A stage file's records; nothing when it is missing or holds rows that are not records."""
    if not path.is_file():
        return
    for value in read_jsonl(path):
        if not isinstance(value.get("instruction"), str):
            return
        yield value


def numeric(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, dict):
        for key in ("score", "value", "mean"):
            if isinstance(value.get(key), int | float) and not isinstance(value.get(key), bool):
                return float(value[key])
    return None


def response_text(record: dict[str, Any]) -> str:
    responses = record.get("responses") or []
    if not responses and is_conversation(record):  # a conversation shows its first answer
        return next(iter(assistant_responses(record)), {}).get("text", "")
    return responses[chosen_index(record)].get("text", "") if responses else ""


def example(record: dict[str, Any], name: str) -> dict[str, Any]:
    reject = record.get("reject") or {}
    score = (record.get("scores") or {}).get(name, reject.get("score"))
    return {
        "instruction": record.get("instruction", "")[:EXCERPT],
        "response": response_text(record)[:EXCERPT],
        "score": round(score, 4) if isinstance(score, float) else score,
        "reason": reject.get("reason"),
    }


def filter_configs(config: dict[str, Any]) -> list[dict[str, Any]]:
    section = config.get("filter")
    if isinstance(section, dict):
        section = next((v for v in section.values() if isinstance(v, list)), [section])
    return [entry for entry in section or [] if isinstance(entry, dict)]


def value_readers(config: dict[str, Any]) -> dict[str, Callable[[Any], float | None]]:
    """Each configured filter's own reading of its score object (``Filter.value``)."""
    from distillpipe.filters.base import filter_class

    readers = {}
    for entry in filter_configs(config):
        try:
            cls = filter_class(entry["type"])
            readers[entry.get("name") or entry["type"]] = cls(cls.Options(**entry)).value
        except Exception:  # a filter this install lacks: fall back to plain numbers
            continue
    return readers


def thresholds_for(name: str, config: dict[str, Any], stats: dict[str, Any]) -> dict[str, float]:
    """Numeric bounds from the filter's config; a percentile bound (``p90``) reads the
    run's own quantile of that name."""
    found: dict[str, float] = {}
    quantiles = stats.get("quantiles") or {}
    for entry in filter_configs(config):
        if name in (entry.get("name"), entry.get("type")):
            for key, value in entry.items():
                if not any(word in key for word in THRESHOLD_WORDS):
                    continue
                if numeric(value) is not None:
                    found[key] = float(value)
                elif isinstance(value, str) and numeric(quantiles.get(value)) is not None:
                    found[f"{key} ({value})"] = float(quantiles[value])
    if numeric(stats.get("threshold")) is not None:
        found.setdefault("threshold", float(stats["threshold"]))
    return found


@dataclass
class RunData:
    manifest: dict[str, Any]
    stages: list[StageView]
    instruction_words: dict[str, list[int]] = field(default_factory=dict)  # per stage
    response_tokens: dict[str, list[int]] = field(default_factory=dict)
    answer_tokens: dict[str, list[int]] = field(default_factory=dict)  # of traced responses
    trace_tokens: dict[str, list[int]] = field(default_factory=dict)  # per stage
    filters: dict[str, FilterView] = field(default_factory=dict)
    operators: Counter[str] = field(default_factory=Counter)
    depths: Counter[int] = field(default_factory=Counter)
    personas: Counter[str] = field(default_factory=Counter)  # records tagged origin.persona
    topic_tree: TopicTree | None = None  # the topics stage's topic_tree.json
    readers: dict[str, Callable[[Any], float | None]] = field(default_factory=dict)

    def score_value(self, name: str, score: Any) -> float | None:
        reader = self.readers.get(name)
        if reader is not None and score is not None:
            try:
                value = reader(score)
            except (AttributeError, KeyError, TypeError, IndexError):
                value = None
            if value is not None:
                return float(value)
        return numeric(score)


def collect(run_dir: Path) -> RunData:
    manifest, stages = load_stages(run_dir)
    data = RunData(manifest, stages, readers=value_readers(manifest.get("config") or {}))
    lineage: dict[str, dict[str, Any]] = {}
    for stage in stages:
        for record in records_in(stage.output):
            lineage[record["id"]] = record.get("origin") or {}
            _count_lengths(data, stage.name, record)
            for name, value in (record.get("scores") or {}).items():
                view = data.filters.setdefault(name, FilterView(name))
                if (score := data.score_value(name, value)) is not None:
                    view.passed[record["id"]] = score
                if len(view.kept_examples) < EXAMPLES_PER_FILTER:
                    view.kept_examples.append(example(record, name))
        for record in records_in(stage.rejected):
            _count_rejected(data, stage.name, record)
    config = manifest.get("config") or {}
    for view in data.filters.values():
        for record_id in view.rejected:
            view.passed.pop(record_id, None)
        for record_id in [*view.passed, *view.rejected]:
            view.rejected_elsewhere.pop(record_id, None)
        stats = next(
            (
                s.stats["filters"][view.name]
                for s in stages
                if view.name in (s.stats.get("filters") or {})
            ),
            None,
        )
        view.thresholds = thresholds_for(view.name, config, stats or {})
    for origin in lineage.values():
        if origin.get("operator"):
            data.operators[str(origin["operator"])] += 1
        if isinstance(origin.get("round"), int):
            data.depths[origin["round"]] += 1
        if isinstance(origin.get("persona"), str):
            data.personas[origin["persona"]] += 1
    if (run_dir / TREE_FILE).is_file():
        data.topic_tree = TopicTree.load(run_dir / TREE_FILE)
    return data


def _count_lengths(data: RunData, stage: str, record: dict[str, Any]) -> None:
    data.instruction_words.setdefault(stage, []).append(len(record["instruction"].split()))
    for response in record.get("responses") or assistant_responses(record):
        usage = response.get("usage") or {}
        answer_tokens = (usage.get("completion_tokens") or 0) - usage.get("reasoning_tokens", 0)
        tokens = answer_tokens if answer_tokens > 0 else len(response.get("text", "").split())
        data.response_tokens.setdefault(stage, []).append(tokens)
        if response.get("reasoning"):
            trace = usage.get("reasoning_tokens") or len(response["reasoning"].split())
            data.trace_tokens.setdefault(stage, []).append(trace)
            data.answer_tokens.setdefault(stage, []).append(tokens)


def _count_rejected(data: RunData, stage: str, record: dict[str, Any]) -> None:
    """A rejected record counts against the filter that rejected it; other filters that
    scored it show it apart, as rejected elsewhere."""
    reject = record.get("reject") or {}
    rejecting = str(reject.get("filter") or stage)
    scores = record.get("scores") or {}
    for name, value in scores.items():
        if name != rejecting and (score := data.score_value(name, value)) is not None:
            view = data.filters.setdefault(name, FilterView(name))
            view.rejected_elsewhere[record["id"]] = score
    view = data.filters.setdefault(rejecting, FilterView(rejecting))
    score = data.score_value(rejecting, scores.get(rejecting, reject.get("score")))
    if score is not None:
        view.rejected[record["id"]] = score
    if len(view.rejected_examples) < EXAMPLES_PER_FILTER:
        view.rejected_examples.append(example(record, rejecting))
