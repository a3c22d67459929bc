"""The topics stage on the embedded gemma: a taxonomy grown from subjects (or a domain),
questions about its leaves with their path, deduplicated, the tree saved; a rerun asks
nothing and writes the same bytes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import llama_cpp
import orjson
import pytest
from support import small_llamacpp_config, write_config

from distillpipe.config import load_config
from distillpipe.errors import ConfigError
from distillpipe.io import read_jsonl, read_records, write_jsonl
from distillpipe.runner import remove_abandoned_run_temps, run_stage
from distillpipe.stages import stage_named
from distillpipe.stages.topics import TopicsOptions, kinds_for
from distillpipe.topic_tree import TREE_FILE, TopicNode, TopicTree

SUBJECTS = ["Astronomy", "Home cooking"]


def topics_config(tmp_path: Path, gguf: Path, **topics: object) -> Path:
    data = small_llamacpp_config()
    data["teacher"]["model_path"] = str(gguf)
    data["topics"] = {
        "subjects": SUBJECTS, "depth": 1, "width": 2, "questions_per_leaf": 1,
        "max_tokens": 40, **topics,
    }  # fmt: skip
    return write_config(tmp_path / "config.yaml", data)


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every prompt that reached llama.cpp."""
    prompts: list[str] = []
    original = llama_cpp.Llama.create_completion

    def observed(self, prompt, *args, **kwargs):
        prompts.append(prompt)
        return original(self, prompt, *args, **kwargs)

    monkeypatch.setattr(llama_cpp.Llama, "create_completion", observed)
    return prompts


def test_a_two_level_taxonomy_from_two_subjects_gives_questions_with_their_path(
    tmp_path: Path, gguf_path: Path, sent: list[str]
):
    config = load_config(topics_config(tmp_path, gguf_path))
    seed = {"id": "seed", "instruction": "Name a colour.", "origin": {"stage": "input"}}
    write_jsonl(tmp_path / "in.jsonl", [seed])
    stage = stage_named("topics")
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    first_dir.mkdir(), second_dir.mkdir()
    first = run_stage(
        stage, config, tmp_path / "in.jsonl", first_dir / "topics.jsonl",
        rejected_path=first_dir / "rejected.jsonl",
    )  # fmt: skip

    out = list(read_records(first_dir / "topics.jsonl"))
    assert out[0] == seed  # input records pass through first
    questions = out[1:]
    assert questions and len(questions) <= len(SUBJECTS) * 2  # width 2, one question a leaf
    tree = TopicTree.load(first_dir / TREE_FILE)
    assert [subject.name for subject in tree.roots] == SUBJECTS
    leaves = {leaf.path for leaf in tree.leaves()}
    for record in questions:
        origin = record["origin"]
        assert origin["stage"] == "topics" and origin["kind"] in ("easy", "hard")
        path = tuple(origin["path"])
        assert path in leaves and path[0] in SUBJECTS
        assert record["instruction"] == record["instruction"].strip() != ""
    assert any(len(path) == 2 for path in leaves)  # subjects > subtopics
    # the tree's counts are the questions written, branch by branch
    assert sum(leaf.questions for leaf in tree.leaves()) == len(questions)
    for subject in tree.roots:
        assert subject.total_questions == sum(
            1 for r in questions if r["origin"]["path"][0] == subject.name
        )
    # deduplicated: no two names at a level, no two questions alike
    for depth in (0, 1):
        names = [node.name.lower() for node in tree.at_depth(depth)]
        assert len(names) == len(set(names))
    assert len({r["id"] for r in out}) == len(out)
    for rejected in read_jsonl(first_dir / "rejected.jsonl"):
        assert rejected["reject"]["filter"].startswith("topics.")
    stats = first.stats["topics"]
    assert stats["leaves"] == len(leaves) and stats["questions"] == len(questions)
    assert first.stats["teacher"]["teacher_calls"] == len(sent) == stats["requests"] > 0

    calls = len(sent)
    again = run_stage(
        stage, config, tmp_path / "in.jsonl", second_dir / "topics.jsonl",
        rejected_path=second_dir / "rejected.jsonl",
    )  # fmt: skip
    assert again.stats["teacher"]["teacher_calls"] == 0 and len(sent) == calls
    for name in ("topics.jsonl", "rejected.jsonl", TREE_FILE):
        assert (first_dir / name).read_bytes() == (second_dir / name).read_bytes()


def test_without_subjects_the_teacher_lists_the_domain_s_subjects(tmp_path: Path, gguf_path: Path):
    config = load_config(
        topics_config(tmp_path, gguf_path, subjects=[], domain="Gardening", depth=0, width=2)
    )
    run_stage(stage_named("topics"), config, os.devnull, tmp_path / "topics.jsonl")
    tree = TopicTree.load(tmp_path / TREE_FILE)
    assert tree.domain == "Gardening" and 1 <= len(tree.roots) <= 2
    subjects = {subject.name for subject in tree.roots}
    for record in read_records(tmp_path / "topics.jsonl"):
        (subject,) = record["origin"]["path"]  # depth 0: questions about the subjects
        assert subject in subjects


def test_each_leaf_s_question_kinds_are_drawn_from_the_mix_by_seed_and_path():
    options = TopicsOptions(subjects=["A"], questions_per_leaf=6, mix={"easy": 1, "hard": 3})
    leaf = TopicNode("Stars", ("Astronomy", "Stars"))
    drawn = kinds_for(leaf, options, seed=1)
    assert sum(drawn.values()) == 6 and set(drawn) <= {"easy", "hard"}
    assert kinds_for(leaf, options, seed=1) == drawn  # the same seed and path: the same kinds
    others = {
        tuple(kinds_for(TopicNode(n, ("Astronomy", n)), options, seed=1).items())
        for n in ("Moons", "Comets", "Nebulae", "Galaxies", "Pulsars", "Quasars")
    }
    assert len(others) > 1  # leaves differ


@pytest.mark.parametrize(
    ("topics", "message"),
    [
        ({"depth": 1}, r"config.yaml:\d+: topics: .*`subjects: \[\.\.\.\]` or a `domain"),
        ({"subjects": ["A"], "mix": {"easy": -1}}, r"topics\.mix: .*weights must be >= 0"),
        ({"subjects": ["A"], "wdith": 2}, r"unknown key 'topics\.wdith'"),
        ({"subjects": ["A"], "depth": 4}, r"topics\.depth: "),
    ],
)
def test_a_bad_topics_section_names_its_key_and_line(tmp_path: Path, topics: dict, message: str):
    data = small_llamacpp_config()
    data["topics"] = topics
    with pytest.raises(ConfigError, match=message):
        load_config(write_config(tmp_path / "config.yaml", data))


def test_run_chains_topics_and_personas_and_the_report_draws_tree_and_personas(
    tmp_path: Path, gguf_path: Path, cli_env: dict
):
    data = small_llamacpp_config()
    data["teacher"]["model_path"] = str(gguf_path)
    data["topics"] = {"subjects": SUBJECTS, "depth": 1, "width": 2, "questions_per_leaf": 1,
                      "max_tokens": 40}  # fmt: skip
    (tmp_path / "personas.txt").write_text("an amateur astronomer\na student cook\n")
    data["personas"] = {"file": "personas.txt", "pairs": 2, "max_tokens": 32,
                        "keep_truncated": True}  # fmt: skip
    config = write_config(tmp_path / "config.yaml", data)
    command = [sys.executable, "-m", "distillpipe"]
    done = subprocess.run(
        [*command, "run", str(config), "-q", "--to", "personas"],
        env=cli_env, capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    run_dir = tmp_path / "runs" / "test"
    manifest = orjson.loads((run_dir / "manifest.json").read_bytes())
    assert list(manifest["stages"]) == ["topics", "personas"]  # topics (50) before personas (120)
    tree = TopicTree.load(run_dir / TREE_FILE)

    done = subprocess.run([*command, "report", str(run_dir)], env=cli_env, capture_output=True,
                          text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    html = (run_dir / "report.html").read_text()
    assert 'id="topic-tree-table"' in html and 'id="personas-table"' in html
    for row in tree.branch_counts():
        assert f'data-path="{" &gt; ".join(row.path)}"' in html

    # the command of its own answers from the same cache, to the same records
    done = subprocess.run(
        [*command, "topics", "-c", str(config), "-o", "t.jsonl"],
        env=cli_env, capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "t.jsonl").read_bytes() == (run_dir / "topics.jsonl").read_bytes()
    row = next(line for line in done.stderr.splitlines() if line.startswith("│ topics"))
    columns = [cell.strip() for cell in row.strip("│").split("│")]
    assert columns[:2] == ["topics", "ran"] and columns[5] == "0"  # teacher calls: none


def test_the_teacher_s_limits_are_checked_on_the_topics_sampling_at_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    data = {
        "teacher": {"backend": "anthropic", "model": "claude-3-5-haiku-latest"},
        "topics": {"subjects": ["A"], "temperature": 1.5},
    }
    with pytest.raises(ConfigError, match=r"config.yaml:\d+: topics.temperature: 1.5 is above"):
        load_config(write_config(tmp_path / "config.yaml", data))


def test_a_tree_temporary_a_killed_run_left_is_removed_with_the_run_s_others(tmp_path: Path):
    left = tmp_path / f".{TREE_FILE}.0123abcd.tmp"  # no writer holds its lock
    left.write_bytes(b"{")
    remove_abandoned_run_temps(tmp_path)
    assert not left.exists()
