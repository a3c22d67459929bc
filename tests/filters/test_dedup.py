"""Dedup on a constructed corpus: exactly the planted duplicates are rejected,
each naming the id of the first occurrence it repeats (and, read from a file,
its line)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from distillpipe.config import ConfigSource, parse_config
from distillpipe.filters.base import build_filter
from distillpipe.filters.dedup import DedupOptions
from distillpipe.io import read_jsonl
from distillpipe.records import new_record
from distillpipe.runner import run_stage
from distillpipe.stages import stage_named

TOPICS = [
    "photosynthesis in green plants", "the causes of the french revolution",
    "how a binary search tree stays balanced", "the life cycle of a monarch butterfly",
    "why the sky looks blue at noon", "the rules of chess castling",
    "how vaccines train the immune system", "the history of the printing press",
    "the difference between weather and climate", "how compound interest grows savings",
]  # fmt: skip


def base_corpus() -> list[dict]:
    rng = random.Random(5)
    records = []
    for topic in TOPICS:
        filler = " ".join(
            rng.choice(["clearly", "briefly", "carefully", "simply"]) for _ in range(3)
        )
        text = (
            f"Explain {topic} to a curious student, {filler}, "
            "with one concrete example from daily life."
        )
        records.append(new_record(text))
    return records


def decide_all(dedup, records):
    scores = dedup.score(records)
    return [dedup.decide(record, score) for record, score in zip(records, scores, strict=True)]


def test_exact_and_near_duplicates_are_rejected_naming_the_first() -> None:
    records = base_corpus()
    exact = new_record("  EXPLAIN " + records[2]["instruction"][8:].upper() + "  ")  # case/space
    near = new_record(records[5]["instruction"].rstrip(".") + " please.")  # one more shingle
    distinct = new_record("Write a limerick about a cat who learns to play the trumpet.")
    corpus = [*records, exact, near, distinct]
    verdicts = decide_all(build_filter(DedupOptions(type="dedup")), corpus)
    rejected = {corpus[i]["id"]: v.reason for i, v in enumerate(verdicts) if not v.keep}
    assert set(rejected) == {exact["id"], near["id"]}
    assert rejected[exact["id"]] == f"exact duplicate of {records[2]['id']}"
    assert rejected[near["id"]].startswith(f"near duplicate of {records[5]['id']} (Jaccard ≈ 0.")


def test_a_record_repeated_in_the_input_is_rejected_naming_the_first_line(tmp_path) -> None:
    repeated = '{"instruction": "Name a colour."}'
    source = tmp_path / "in.jsonl"
    source.write_text(f'{{"instruction": "Name a fruit."}}\n\n{repeated}\n{repeated}\n{repeated}\n')
    config = parse_config(
        {"name": "t", "teacher": {"backend": "llamacpp"}, "filter": [{"type": "dedup"}]},
        ConfigSource("test.yaml", None),
    )
    out, rejected = tmp_path / "out.jsonl", tmp_path / "rejected.jsonl"
    run_stage(stage_named("filter"), config, source, out, rejected_path=rejected)
    kept, dropped = list(read_jsonl(out)), list(read_jsonl(rejected))
    colour = new_record("Name a colour.")["id"]  # all three share it: ids hash the text
    assert [r["instruction"] for r in kept] == ["Name a fruit.", "Name a colour."]
    assert [r["reject"] for r in dropped] == 2 * [
        {
            "filter": "dedup",
            "reason": f"exact duplicate of line 3 (id {colour})",
            "score": {"duplicate_of": colour, "line": 3},
        }
    ]
    assert all("line" not in r for r in kept + dropped)  # the line is no field of the record


def test_near_threshold_decides_what_counts_as_a_duplicate() -> None:
    first = new_record(" ".join(f"word{i}" for i in range(40)))
    # 2 of 40 words changed: 36 of 44 distinct 5-gram shingles shared, Jaccard ≈ 0.6
    changed = first["instruction"].replace("word10", "other").replace("word30", "else")
    second = new_record(changed)
    strict = decide_all(build_filter(DedupOptions(type="dedup")), [first, second])
    loose = decide_all(build_filter(DedupOptions(type="dedup", threshold=0.5)), [first, second])
    assert strict[1].keep
    assert not loose[1].keep and loose[1].score["duplicate_of"] == first["id"]


def test_response_dedup_and_exact_only() -> None:
    a, b = new_record("Say something."), new_record("Say anything.")
    for record in (a, b):
        record["responses"] = [{"text": "Hello there!", "sample": 0}]
    options = DedupOptions(type="dedup", on="response", near=False)
    verdicts = decide_all(build_filter(options), [a, b])
    assert [v.keep for v in verdicts] == [True, False]
    assert verdicts[1].reason == f"exact duplicate of {a['id']}"


@pytest.mark.slow
def test_semantic_dedup_with_the_packaged_minilm() -> None:
    records = [
        new_record("How do I bake a loaf of sourdough bread at home?"),
        new_record("What is the capital city of Australia?"),
        new_record("How can I make sourdough bread in my own kitchen?"),
    ]
    options = DedupOptions(type="dedup", near=False, semantic=True, semantic_threshold=0.8)
    verdicts = decide_all(build_filter(options), records)
    assert [v.keep for v in verdicts] == [True, True, False]
    assert verdicts[2].reason.startswith(f"semantic duplicate of {records[0]['id']} (cosine 0.")


def test_semantic_decisions_in_blocks_equal_comparing_each_record_with_all_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Batches of 7, a kept set larger than one similarity block: the same keeps and the
    same duplicate_of as a brute-force scan of every kept vector, record by record."""
    import distillpipe.filters.dedup as dedup_module

    rng = np.random.default_rng(3)
    originals = rng.normal(size=(60, 16)).astype(np.float32)
    rows = [originals[i] for i in range(60)]
    for _ in range(40):  # planted near-copies of earlier rows, some of them copies of copies
        rows.append(rows[rng.integers(len(rows))] + rng.normal(scale=0.15, size=16))
    vectors = np.asarray(rows, dtype=np.float32)[rng.permutation(len(rows))]
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    records = [new_record(f"record {i}") for i in range(len(vectors))]
    by_text = dict(zip((r["instruction"] for r in records), vectors, strict=True))

    monkeypatch.setattr(dedup_module, "SIMILARITY_BLOCK", 16)
    options = DedupOptions(type="dedup", exact=False, near=False, semantic=True,
                           semantic_threshold=0.9, batch_size=7)  # fmt: skip
    dedup = build_filter(options)
    monkeypatch.setattr(dedup, "_embed", lambda texts: np.stack([by_text[t] for t in texts]))
    verdicts = []
    for start in range(0, len(records), 7):
        batch = records[start : start + 7]
        verdicts += [dedup.decide(r, s) for r, s in zip(batch, dedup.score(batch), strict=True)]

    kept: list[tuple[str, np.ndarray]] = []
    expected = []
    for record, vector in zip(records, vectors, strict=True):
        similarities = [float(other @ vector) for _, other in kept]
        best = int(np.argmax(similarities)) if kept else -1
        if kept and similarities[best] >= 0.9:
            expected.append(kept[best][0])
        else:
            expected.append(None)
            kept.append((record["id"], vector))
    got = [None if v.keep else v.score["duplicate_of"] for v in verdicts]
    assert got == expected
    assert 10 <= sum(v is not None for v in expected) < len(records) - 10  # both outcomes
