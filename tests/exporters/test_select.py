"""export.responses: best-per-teacher takes each panel member's best-scored sample (the
scores of the filter that made the selection), else the chosen sample for its teacher,
else that teacher's first."""

from __future__ import annotations

from distillpipe.exporters.select import best_per_teacher, pick_best_per_teacher, sample_scores


def record(teachers: list[str], rewards: list[float | None] | None, chosen: int | None) -> dict:
    out = {
        "id": "r",
        "instruction": "Name a colour.",
        "responses": [{"text": f"answer {i}", "teacher": t} for i, t in enumerate(teachers)],
    }
    if chosen is not None:
        out["selection"] = {"chosen": chosen, "rejected": None, "by": "reward"}
    if rewards is not None:
        out["scores"] = {"reward": {"rewards": rewards}}
    return out


def test_each_teachers_best_scored_sample_in_panel_order():
    scored = record(["a", "b", "b", "c"], [0.1, 0.3, 0.9, None], chosen=2)
    assert sample_scores(scored) == [0.1, 0.3, 0.9, None]
    assert best_per_teacher(scored) == [0, 2, 3]  # c has no score: its first sample
    picked, reason = pick_best_per_teacher(scored, None)
    assert reason is None and [p.example.response for p in picked] == [
        "answer 0", "answer 2", "answer 3"
    ]  # fmt: skip


def test_without_scores_the_chosen_sample_stands_for_its_teacher():
    assert best_per_teacher(record(["a", "a", "b", "b"], None, chosen=3)) == [0, 3]
    assert best_per_teacher(record(["a", "b"], [0.5], chosen=1)) == [0, 1]  # scores misaligned
    assert best_per_teacher(record(["a", "b", "b"], None, chosen=None)) == [0, 1]
