# ruff: noqa: F811 - pytest fixtures imported from tiny_models are parameters here
"""Reward: a sequence-classification reward model built here (random weights, a
tokenizer trained on the spot) through the real transformers path; the LLM
judge through the real cached dispatcher and llama.cpp; robust rating parsing."""

from __future__ import annotations

import asyncio

import pytest
from tiny_models import tiny_reward_model  # noqa: F401 - a fixture, used as a parameter below

from distillpipe.cache import ResponseCache
from distillpipe.config import parse_config
from distillpipe.dispatch import Dispatcher
from distillpipe.filters.base import build_filter
from distillpipe.filters.judge import parse_rating
from distillpipe.filters.reward import RewardOptions
from distillpipe.records import new_record
from distillpipe.stages.base import build_teacher


@pytest.mark.parametrize(
    ("reply", "rating"),
    [
        ("The answer is helpful and correct. Rating: [[8]]", 8.0),
        ("Explanation... [[ 6.5 ]]", 6.5),
        ("Score: 7/10 because it is mostly right.", 7.0),
        ("I'd give it 9 out of 10.", 9.0),
        ("**Rating:** **4**", 4.0),
        (" 3 ", 3.0),
        ("Rating: [[11]]", None),  # outside 1-10: unparseable, not clipped
        ("It is a decent response overall.", None),
        ("", None),
    ],
)
def test_judge_ratings_are_parsed_robustly(reply: str, rating: float | None) -> None:
    assert parse_rating(reply) == rating


def sampled(instruction: str, *texts: str) -> dict:
    record = new_record(instruction)
    record["responses"] = [{"text": t, "sample": i} for i, t in enumerate(texts)]
    return record


def test_reward_model_scores_every_sample_in_batches(tiny_reward_model) -> None:
    options = RewardOptions(type="reward", model=str(tiny_reward_model), device="cpu")
    reward = build_filter(options)
    records = [
        sampled("Name three primary colours.", "Red, yellow and blue.", "Green.", "Red."),
        sampled("What is the capital of France?", "Paris is the capital of France."),
    ]
    batched = reward.score(records)
    alone = [reward.score([r])[0] for r in records]
    for together, single in zip(batched, alone, strict=True):
        assert together["rewards"] == pytest.approx(single["rewards"], abs=1e-4)
    first = batched[0]
    assert len(first["rewards"]) == 3 and len(set(first["rewards"])) == 3
    best = max(range(3), key=lambda i: first["rewards"][i])
    worst = min(range(3), key=lambda i: first["rewards"][i])
    verdict = reward.decide(records[0], first)
    assert verdict.keep and verdict.score["reward"] == first["rewards"][best]
    assert verdict.selection == {"chosen": best, "rejected": worst, "by": "reward"}
    single_sample = reward.decide(records[1], batched[1])
    assert single_sample.selection["rejected"] is None  # no preference with one sample
    # the chat template is applied: the rendered text carries the role markers
    assert "<|assistant|>" in reward.load().render("q", "a")


def test_thresholds_bound_the_chosen_reward(tiny_reward_model) -> None:
    low = build_filter(RewardOptions(type="reward", model=str(tiny_reward_model), min=100))
    score = {"rewards": [0.25, -1.0], "reward": 0.25, "best": 0, "worst": 1}
    verdict = low.decide({}, score)
    assert not verdict.keep and verdict.reason == "reward 0.25 < min 100"


def test_unparseable_judgements_are_judged_as_such() -> None:
    judge = build_filter(RewardOptions(type="reward", backend="judge"))
    score = {"rewards": [None, None], "reward": None, "best": None, "worst": None}
    assert judge.decide({}, score).reason == "judge rating unparseable for every sample"
    keep = build_filter(RewardOptions(type="reward", backend="judge", on_unparseable="keep"))
    assert keep.decide({}, score).keep


@pytest.mark.slow
def test_judge_asks_the_teacher_through_the_cache(tmp_path) -> None:
    config = parse_config(
        {"teacher": {"backend": "llamacpp", "mode": "completion", "n_ctx": 512}},
        source=None,  # type: ignore[arg-type]
    )
    options = RewardOptions(type="reward", backend="judge", max_tokens=4)
    records = [sampled("Name a primary colour.", "Red.", "Blue.")]

    async def judge_once() -> tuple[list, dict]:
        judge = build_filter(options, config)
        teacher = build_teacher(config)
        dispatcher = Dispatcher(teacher, ResponseCache(str(tmp_path / "c.sqlite")), config.seed)
        judge.attach_dispatcher(dispatcher)
        try:
            return await judge.ascore(records), dispatcher.stats.as_dict()
        finally:
            await teacher.aclose()
            dispatcher.cache.close()

    (first,), stats = asyncio.run(judge_once())
    assert len(first["rewards"]) == 2
    assert all(r is None or 1 <= r <= 10 for r in first["rewards"])
    assert stats["teacher_calls"] == 2
    (again,), replay = asyncio.run(judge_once())
    assert again == first and replay["cache_hits"] == 2 and replay["teacher_calls"] == 0
