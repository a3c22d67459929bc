"""Reading numbered task lists out of what a model writes, and Self-Instruct's cheap rejections."""

from __future__ import annotations

from distillpipe.instructions import CandidateChecks, Task, parse_tasks, stop_sequences


def test_a_completion_continues_the_open_item_then_numbers_the_rest():
    text = " write a haiku about rain.\n10. Explain gravity\n   to a child.\n11) Name a river.\n"
    assert parse_tasks(text, leading_item=True, truncated=False) == [
        Task("Write a haiku about rain."),
        Task("Explain gravity to a child."),
        Task("Name a river."),
    ]


def test_chat_prefaces_markdown_and_labels_are_tolerated():
    text = (
        "Sure! Here are more tasks:\n\n"
        "**9.** **Instruction:** Translate the sentence into German.\n"
        "   Input: I like tea.\n   Output: Ich mag Tee.\n"
        'Task 10: "Sort the numbers."\n   Input: <noinput>\n'
        "- 11. Give a synonym for happy.\n"
    )
    assert parse_tasks(text, leading_item=False, truncated=False) == [
        Task("Translate the sentence into German.", "I like tea.", "Ich mag Tee."),
        Task("Sort the numbers."),
        Task("Give a synonym for happy."),
    ]


def test_a_truncated_completion_loses_its_last_item_and_empty_items_vanish():
    text = " Describe a sunset.\n10.\n11. Write a story about a dragon who"
    assert parse_tasks(text, leading_item=True, truncated=True) == [Task("Describe a sunset.")]


def test_checks_reject_with_a_filter_name_and_reason():
    checks = CandidateChecks(
        min_words=4, max_words=12, blacklist=None, reject_prefixes=["Write a program"]
    )
    assert checks.verdict("Give three tips for staying healthy.") is None
    assert checks.verdict("Name a river.")[0] == "length"
    assert checks.verdict(" ".join(["word"] * 13))[0] == "length"
    assert checks.verdict("Draw a cat on the wall.") == (
        "blacklist",
        "mentions 'draw', which a text-only model cannot do",
    )
    assert checks.verdict("Please go to the shop and buy milk.")[0] == "blacklist"
    assert checks.verdict("Summarise the profile of the user.") is None  # 'file' is a whole word
    assert checks.verdict("Write a program that sorts a list.")[0] == "prefix"
    assert checks.verdict('"Quote the first line of a poem.')[0] == "format"
    assert checks.verdict("Écris une phrase en français ici.")[0] == "format"


def test_stop_files_turn_backslash_n_into_newlines():
    assert stop_sequences("self_instruct/tasks.stop.txt") == ("\n\n",)
