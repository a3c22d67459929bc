# ruff: noqa: F811 - pytest fixtures imported from tiny_models are parameters here
"""Best per example across a panel: a reward model built here scores every sample of
every teacher; the chosen sample is the argmax across teachers, a DPO pair puts it
against the lowest-scored sample, best-per-teacher exports each teacher's argmax, and
the win rates count whose sample was chosen."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from support import write_config, write_records
from tiny_models import tiny_reward_model  # noqa: F401 - a fixture, a parameter below

from distillpipe.config import load_config
from distillpipe.io import read_jsonl
from distillpipe.panel_stats import win_counts
from distillpipe.pipeline import run_pipeline

RECORDS = 3


def panel(tmp_path: Path, reward_model: Path, export: dict) -> Path:
    member = {"backend": "llamacpp", "mode": "completion", "n_ctx": 512}
    data = {
        "name": "best",
        "seed": 3,
        "run_dir": str(tmp_path / "runs"),
        "teachers": [
            {"name": "cold", **member, "sampling": {"temperature": 0.2}},
            {"name": "hot", **member, "n": 2, "sampling": {"temperature": 1.3}},
        ],
        "generate": {"n": 1, "max_tokens": 10},
        "filter": [{"type": "reward", "model": str(reward_model), "device": "cpu"}],
        "export": {"shuffle": False, **export},
    }
    return write_config(tmp_path / "config.yaml", data)


@pytest.mark.slow
def test_the_chosen_sample_is_the_argmax_across_teachers_and_dpo_pairs_it_with_the_worst(
    tmp_path: Path, tiny_reward_model: Path
):
    write_records(tmp_path / "in.jsonl", RECORDS)
    run_dir = tmp_path / "runs" / "best"
    dpo = panel(tmp_path, tiny_reward_model, {"format": "dpo", "conversational": False})
    run_pipeline(load_config(dpo), run_dir, tmp_path / "in.jsonl")

    filtered = list(read_jsonl(run_dir / "filter.jsonl"))
    assert len(filtered) == RECORDS
    pairs = [
        orjson.loads(line)
        for line in (run_dir / "export" / "train.jsonl").read_bytes().splitlines()
    ]
    assert pairs, "the samples should differ in at least one record"
    by_prompt = {row["prompt"]: row for row in pairs}
    for record in filtered:
        teachers = [r["teacher"] for r in record["responses"]]
        assert teachers == ["cold", "hot", "hot"]
        rewards = record["scores"]["reward"]["rewards"]
        best = max(range(3), key=lambda i: rewards[i])
        worst = min(range(3), key=lambda i: rewards[i])
        assert record["selection"] == {"chosen": best, "rejected": worst, "by": "reward"}
        texts = [r["text"].strip() for r in record["responses"]]
        if texts[best] != texts[worst]:
            row = by_prompt[record["instruction"]]
            assert (row["chosen"], row["rejected"]) == (texts[best], texts[worst])
    wins = orjson.loads((run_dir / "manifest.json").read_bytes())["stages"]["export"]
    assert wins["stats"]["export"]["teacher_wins"] == win_counts(filtered)
    counted = win_counts(filtered)
    assert sum(row["chosen"] for row in counted.values()) == RECORDS

    per_teacher = panel(tmp_path, tiny_reward_model, {"responses": "best-per-teacher"})
    run_pipeline(load_config(per_teacher), run_dir, tmp_path / "in.jsonl")
    rows = [
        orjson.loads(line)
        for line in (run_dir / "export" / "train.jsonl").read_bytes().splitlines()
    ]
    expected = []
    for record in filtered:
        rewards = record["scores"]["reward"]["rewards"]
        texts = [r["text"].strip() for r in record["responses"]]
        hot = max((1, 2), key=lambda i: (rewards[i], -i))
        expected += [texts[i] for i in (0, hot) if texts[i]]
    assert [row["messages"][-1]["content"] for row in rows] == expected
    report = (run_dir / "export" / "README.md").read_text()
    assert "| cold | llamacpp |" in report and "| hot | llamacpp |" in report
