# ruff: noqa: F811 - pytest fixtures imported from tiny_models are parameters here
"""Reward: sequence-classification reward models built here (random weights, a
tokenizer trained on the spot) through the real transformers path, their
inputs built as their model cards build them (a question/answer pair with its
special tokens, a chat template with its BOS once), and models that ship their
own code only with trust_remote_code; the LLM judge through the real cached
dispatcher and llama.cpp; robust rating parsing."""

from __future__ import annotations

import asyncio

import pytest
from tiny_models import (  # noqa: F401 - fixtures, used as parameters below
    gated_reward_model,
    own_code_reward_model,
    private_hf_modules,
    tiny_bos_chat_reward_model,
    tiny_pair_reward_model,
    tiny_reward_model,
)

from distillpipe.cache import ResponseCache
from distillpipe.config import parse_config
from distillpipe.dispatch import Dispatcher
from distillpipe.errors import ConfigError
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


def test_a_pair_model_scores_question_and_answer_with_its_special_tokens(
    tiny_pair_reward_model,
) -> None:
    """OpenAssistant's card: ``tokenizer(question, answer)``, i.e. [CLS] q [SEP] a [SEP]."""
    import torch

    reward = build_filter(RewardOptions(type="reward", model=str(tiny_pair_reward_model)))
    model = reward.load()
    tokenizer = model.tokenizer
    assert not model.chat
    ids = model.encode([("Name a colour.", "Red.", "Be brief.")])["input_ids"][0].tolist()
    question = tokenizer("Name a colour.", add_special_tokens=False)["input_ids"]
    answer = tokenizer("Red.", add_special_tokens=False)["input_ids"]
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    assert ids == [cls, *question, sep, *answer, sep]  # the system prompt is no part of it
    assert ids.count(cls) == 1

    [score] = reward.score([sampled("Name a colour.", "Red.")])
    card = tokenizer("Name a colour.", "Red.", return_tensors="pt")
    with torch.inference_mode():
        expected = model.model(**card).logits[0, 0].item()
    assert score["rewards"] == [pytest.approx(expected, abs=1e-5)]
    long = model.encode([("Name a colour.", "red " * 500, None)])["input_ids"]
    assert long.shape[1] == 128  # truncated to what the model takes (its tokenizer's max)


def test_a_chat_template_model_scores_the_rendered_conversation_with_one_bos(
    tiny_bos_chat_reward_model,
) -> None:
    """Skywork's card: ``apply_chat_template(conversation, tokenize=True)``; the template
    writes BOS, so the text must not be tokenized with special tokens again."""
    import torch

    reward = build_filter(RewardOptions(type="reward", model=str(tiny_bos_chat_reward_model)))
    model = reward.load()
    tokenizer = model.tokenizer
    conversation = [
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Red."},
    ]
    ids = model.encode([("Name a colour.", "Red.", None)])["input_ids"][0].tolist()
    card = tokenizer.apply_chat_template(conversation, tokenize=True, return_tensors="pt")
    assert ids == card["input_ids"][0].tolist()
    assert ids[0] == tokenizer.bos_token_id and ids.count(tokenizer.bos_token_id) == 1
    text = tokenizer.apply_chat_template(conversation, tokenize=False)
    assert tokenizer(text)["input_ids"].count(tokenizer.bos_token_id) == 2  # the trap avoided

    [score] = reward.score([sampled("Name a colour.", "Red.")])
    with torch.inference_mode():
        expected = model.model(input_ids=card["input_ids"]).logits[0, 0].item()
    assert score["rewards"] == [pytest.approx(expected, abs=1e-5)]


def reward_in_config(folder, **options):
    """The reward filter as the second filter of a config: ``filter.1``."""
    item = {"type": "reward", "model": str(folder), **options}
    config = parse_config({"filter": [{"type": "length"}, item]}, source=None)  # type: ignore[arg-type]
    return build_filter(config.filter[1], config)


def test_a_model_shipping_its_own_code_needs_trust_remote_code(
    own_code_reward_model, private_hf_modules
) -> None:
    with pytest.raises(ConfigError) as error:
        reward_in_config(own_code_reward_model).load()
    assert str(error.value) == (
        f"filter.1: the reward model {own_code_reward_model} runs its own code (its own config "
        "class); to run it, set filter.1.trust_remote_code: true (only for a model you trust)"
    )

    trusted = reward_in_config(own_code_reward_model, trust_remote_code=True)
    assert type(trusted.load().model).__name__ == "TinyOwnRewardModel"
    [score] = trusted.score([sampled("Name a colour.", "Red.", "Blue.")])
    assert len(score["rewards"]) == 2 and len(set(score["rewards"])) == 2


def test_an_armorm_like_model_is_not_quietly_loaded_as_transformers_generic_class(
    gated_reward_model, private_hf_modules
) -> None:
    """ArmoRM's config is a Llama's: without trust_remote_code transformers would load
    LlamaForSequenceClassification in place of its own class, and score with the wrong head."""
    import torch
    from transformers import LlamaForSequenceClassification

    with pytest.raises(ConfigError, match=r"^filter\.1: the reward model .* runs its own code "
                       r"\(tiny_gated_reward\.TinyGatedReward\); to run it, set "
                       r"filter\.1\.trust_remote_code: true"):  # fmt: skip
        reward_in_config(gated_reward_model).load()
    alone = build_filter(RewardOptions(type="reward", model=str(gated_reward_model)))
    with pytest.raises(ConfigError, match=r"^filter reward: .* set trust_remote_code: true"):
        alone.load()

    trusted = reward_in_config(gated_reward_model, trust_remote_code=True)
    model = trusted.load()
    [score] = trusted.score([sampled("Name a colour.", "Red.")])
    generic = LlamaForSequenceClassification.from_pretrained(gated_reward_model)
    with torch.inference_mode():
        logit = generic(**model.encode([("Name a colour.", "Red.", None)])).logits[0, 0].item()
    assert score["rewards"] == [pytest.approx(2.0 * logit + 1.0, abs=1e-5)]  # its own `score`


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


def test_a_thinking_judge_is_rated_by_its_answer_not_its_trace(fault_server) -> None:
    fault_server.answer = lambda body: "<think>\nAt first sight [[2]], but no.\n</think>\n\n[[8]]"
    teacher = {"backend": "openai", "model": "gpt-4o-mini", "base_url": f"{fault_server.url}/v1"}
    config = parse_config({"teacher": {**teacher, "api_key": "k"}}, source=None)  # type: ignore[arg-type]
    judge = build_filter(RewardOptions(type="reward", backend="judge"), config)

    async def rate() -> list:
        dispatcher = Dispatcher(build_teacher(config), None, config.seed)
        judge.attach_dispatcher(dispatcher)
        try:
            return await judge.ascore([sampled("Name a primary colour.", "Red.")])
        finally:
            await dispatcher.teacher.aclose()

    [score] = asyncio.run(rate())
    assert score["rewards"] == [8.0]
