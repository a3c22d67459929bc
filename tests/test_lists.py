"""Reading the items of a list a teacher wrote: markers off, junk out, order kept."""

from __future__ import annotations

from distillpipe.lists import ListLimits, clean_item, first_item, list_items


def test_numbered_and_bulleted_items_lose_their_markers():
    text = "1. Algebra\n2) Geometry\n(3) Number theory\n- Statistics\n* Probability\n• Logic"
    assert list_items(text) == [
        "Algebra", "Geometry", "Number theory", "Statistics", "Probability", "Logic",
    ]  # fmt: skip


def test_emphasis_headings_quotes_and_labels_are_stripped():
    text = (
        '## **1. Baking**\n2. "Knife skills"\nQuestion 3: Why does dough rise?\n> 4. `Food safety`:'
    )
    assert list_items(text) == ["Baking", "Knife skills", "Why does dough rise?", "Food safety"]


def test_a_completion_that_starts_inside_the_first_item_keeps_it():
    # the prompt ended at "1.": the model writes the rest of item 1, then 2., 3.
    assert list_items(" Stars\n2. Planets\n3. Comets", leading_item=True) == [
        "Stars", "Planets", "Comets",
    ]  # fmt: skip


def test_a_preface_ending_in_a_colon_is_skipped_unless_the_text_starts_an_item():
    text = "Here are some subtopics:\n1. Stars\n2. Planets"
    assert list_items(text) == ["Stars", "Planets"]
    assert list_items(text, leading_item=True) == ["Here are some subtopics", "Stars", "Planets"]


def test_a_cut_off_last_line_is_dropped_whole():
    assert list_items("1. Stars\n2. Planets\n3. Black ho", truncated=True) == ["Stars", "Planets"]


def test_empty_overlong_letterless_and_repeated_items_are_dropped():
    limits = ListLimits(max_chars=20, max_words=3)
    text = "1. Stars\n2.\n3. 42\n4. a name that is far too long to be one\n5. stars\n6. Dark matter"
    assert list_items(text, limits=limits) == ["Stars", "Dark matter"]


def test_one_line_of_names_is_split_at_its_commas():
    assert list_items("Algebra, Geometry, Calculus") == ["Algebra", "Geometry", "Calculus"]
    # a single item with one comma is one item
    assert list_items("Salt, pepper") == ["Salt, pepper"]


def test_text_that_only_looks_like_a_marker_is_kept():
    assert clean_item("U.S. history") == "U.S. history"
    assert clean_item("1.5 million years of evolution") == "1.5 million years of evolution"
    assert clean_item("a. Astronomy") == "Astronomy"


def test_first_item_is_the_first_usable_line():
    assert first_item(' "How far away is the Moon?"\nPerson: someone else') == (
        "How far away is the Moon?"
    )
    assert first_item("\n\n") == ""
