"""The ROUGE-L novelty index: rouge-score's rougeL F, exactly, and brute force's decisions."""

from __future__ import annotations

import random

import pytest
from rouge_score import rouge_scorer

from distillpipe.novelty import NoveltyIndex, rouge_l, rouge_tokens

VOCAB = str.split(
    "the a an of to and write explain list give three tips for staying healthy poem about "
    "summer sky blue why is cat dog translate sentence into French summarize story rewrite "
    "following paragraph in simple words classify review positive negative 42 2024 C++"
)
DECORATIONS = ["", ".", ",", "!", "?", "'s", "-", " (x)", ":", "É", "ü", "—", "\n"]


def random_text(rng: random.Random) -> str:
    words = []
    for _ in range(rng.randint(0, 18)):
        word = rng.choice(VOCAB)
        word = (
            word.upper()
            if rng.random() < 0.1
            else word.capitalize()
            if rng.random() < 0.2
            else word
        )
        words.append(word + rng.choice(DECORATIONS))
    return " ".join(words)


def varied_pairs(count: int, seed: int = 3) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    pairs = []
    for _ in range(count):
        a = random_text(rng)
        kind = rng.random()
        if kind < 0.3:  # a near copy: words dropped, swapped or added
            words = a.split()
            rng.shuffle(words[: len(words) // 3])
            b = " ".join(w for w in words if rng.random() < 0.8) + " " + random_text(rng)[:20]
        elif kind < 0.4:
            b = a
        else:
            b = random_text(rng)
        pairs.append((a, b))
    return pairs


@pytest.fixture(scope="module")
def scorer() -> rouge_scorer.RougeScorer:
    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def test_rouge_l_equals_rouge_score_rougeL_fmeasure_on_hundreds_of_pairs(scorer):
    pairs = varied_pairs(400)
    assert sum(a == b for a, b in pairs) > 20 and sum(not a.strip() for a, _ in pairs) > 0
    for a, b in pairs:
        assert rouge_l(a, b) == scorer.score(a, b)["rougeL"].fmeasure, (a, b)


def test_tokens_are_rouge_scores_default_tokenisation():
    assert rouge_tokens("Explain C++'s  ÉCOLE, 42 times!") == [
        "explain",
        "c",
        "s",
        "cole",
        "42",
        "times",
    ]


def test_the_index_keeps_and_rejects_exactly_as_brute_force_does(scorer):
    rng = random.Random(11)
    pool_texts = [random_text(rng) for _ in range(250)]
    index = NoveltyIndex()
    for text in pool_texts:
        index.add(text)
    for a, _ in varied_pairs(100, seed=5):
        brute = [scorer.score(a, text)["rougeL"].fmeasure for text in pool_texts]
        novel, match = index.check(a, 0.7)
        assert novel == (max(brute) < 0.7), a
        if novel:
            assert match.score == max(brute)
            assert match.index == -1 or brute[match.index] == match.score
        else:
            assert brute[match.index] == match.score >= 0.7


def test_best_is_the_exact_maximum_and_its_first_position(scorer):
    index = NoveltyIndex()
    pool = [
        "Write a poem about summer.",
        "List three fruits.",
        "Write a poem about the summer sea.",
    ]
    for text in pool:
        index.add(text)
    best = index.best("write a poem about summer")
    assert (best.score, best.index) == (1.0, 0)
    assert index.best("Name colours!").index == -1  # no shared token: nothing to point at
    assert len(index) == 3


def test_tokens_equal_rouge_scores_tokenizer_on_odd_text(scorer):
    texts = [random_text(random.Random(seed)) for seed in range(200)]
    texts += ["İstanbul ǅemal ß ﬁne Ⅻ ½ ２ x²", "tab\tnew\nline\r\u00a0nbsp", "", "  ..  "]
    for text in texts:
        assert rouge_tokens(text) == scorer._tokenizer.tokenize(text), text
