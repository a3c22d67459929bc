"""The topic tree: nodes with their paths, counts per branch, saved and read back as JSON."""

from __future__ import annotations

from pathlib import Path

import pytest

from distillpipe.errors import InputError
from distillpipe.topic_tree import TREE_FILE, BranchCount, TopicTree, tree_path_for


def small_tree() -> TopicTree:
    tree = TopicTree.of("Science", ["Astronomy", "Biology"])
    astronomy, biology = tree.roots
    stars = astronomy.child("Stars")
    stars.questions = 2
    astronomy.child("Planets").questions = 1
    astronomy.dropped = 3
    biology.questions = 1  # a subject that got no subtopics is a leaf
    return tree


def test_a_node_s_path_runs_from_its_subject_down():
    tree = small_tree()
    assert [node.path for node in tree.nodes()] == [
        ("Astronomy",), ("Astronomy", "Stars"), ("Astronomy", "Planets"), ("Biology",),
    ]  # fmt: skip
    assert [leaf.name for leaf in tree.leaves()] == ["Stars", "Planets", "Biology"]
    assert [node.name for node in tree.at_depth(1)] == ["Stars", "Planets"]
    assert tree.domain == "Science" and TopicTree.of(None).domain is None


def test_counts_per_branch_add_up_the_questions_and_leaves_under_each_node():
    assert small_tree().branch_counts() == [
        BranchCount(("Astronomy",), 0, questions=3, leaves=2, dropped=3),
        BranchCount(("Astronomy", "Stars"), 1, questions=2, leaves=1, dropped=0),
        BranchCount(("Astronomy", "Planets"), 1, questions=1, leaves=1, dropped=0),
        BranchCount(("Biology",), 0, questions=1, leaves=1, dropped=0),
    ]


def test_a_saved_tree_reads_back_equal_and_saves_to_the_same_bytes(tmp_path: Path):
    tree = small_tree()
    tree.root.dropped = 1
    tree.save(tmp_path / "a.json")
    loaded = TopicTree.load(tmp_path / "a.json")
    assert loaded == tree
    loaded.save(tmp_path / "b.json")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()


def test_a_file_that_is_not_a_tree_is_a_one_line_error_naming_it(tmp_path: Path):
    (tmp_path / "bad.json").write_text('{"subjects": [{"name": "x"}]}')
    with pytest.raises(InputError, match=r"bad\.json: not a topic tree"):
        TopicTree.load(tmp_path / "bad.json")


def test_the_tree_is_saved_beside_the_stage_output():
    assert tree_path_for(Path("runs/x/topics.jsonl")) == Path("runs/x") / TREE_FILE
    assert tree_path_for(None) is None  # stdout: no file to stand beside
