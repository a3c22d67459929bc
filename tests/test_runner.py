"""run_stage: one stage from a file into a file, atomically, with the collector kept off
the objects that exist before it streams; run_pipeline: which finished stages it skips."""

from __future__ import annotations

import gc
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from stages.killing import kill_after, start
from support import small_llamacpp_config, write_config

from distillpipe.config import load_config
from distillpipe.io import read_jsonl, write_jsonl
from distillpipe.pipeline import run_pipeline
from distillpipe.runner import run_stage
from distillpipe.stages.base import Record, StageContext


class FreezeWatcher:
    """A stage that passes records through and notes whether the collector is frozen."""

    name: ClassVar[str] = "watch"
    section: ClassVar[str] = "filter"
    config_sections: ClassVar[tuple[str, ...]] = ()

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.frozen_while_running: list[int] = []

    def run(self, records: Iterator[Record], ctx: StageContext) -> Iterator[Record]:
        for record in records:
            self.frozen_while_running.append(gc.get_freeze_count())
            if self.fail:
                raise RuntimeError("the stage broke")
            yield record


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, object]:
    write_jsonl(tmp_path / "in.jsonl", [{"instruction": f"task {i}"} for i in range(3)])
    config = load_config(write_config(tmp_path / "c.yaml", {"teacher": {"backend": "llamacpp"}}))
    return tmp_path / "in.jsonl", config


def test_objects_loaded_before_the_stage_are_frozen_while_it_streams(tmp_path, inputs):
    source, config = inputs
    stage = FreezeWatcher()
    result = run_stage(stage, config, source, tmp_path / "out.jsonl")
    assert result.records_out == 3 and len(list(read_jsonl(tmp_path / "out.jsonl"))) == 3
    assert all(count > 0 for count in stage.frozen_while_running)
    assert gc.get_freeze_count() == 0  # and thawed afterwards


def test_a_failing_stage_thaws_them_and_writes_nothing(tmp_path, inputs):
    source, config = inputs
    with pytest.raises(RuntimeError, match="the stage broke"):
        run_stage(FreezeWatcher(fail=True), config, source, tmp_path / "out.jsonl")
    assert gc.get_freeze_count() == 0
    assert not (tmp_path / "out.jsonl").exists()


def test_a_freeze_made_by_the_caller_is_left_alone(tmp_path, inputs):
    source, config = inputs
    callers_object: list[int] = []
    gc.freeze()
    try:
        run_stage(FreezeWatcher(), config, source, tmp_path / "out.jsonl")
        assert gc.get_freeze_count() > 0
        assert not any(tracked is callers_object for tracked in gc.get_objects())  # still frozen
    finally:
        gc.unfreeze()


@pytest.mark.slow
def test_a_run_killed_mid_stage_leaves_a_temporary_that_the_next_run_removes(tmp_path: Path):
    config = {**small_llamacpp_config(max_tokens=4), "input": "in.jsonl"}
    write_config(tmp_path / "config.yaml", config)
    write_jsonl(tmp_path / "in.jsonl", [{"instruction": f"Name shop {i}."} for i in range(3)])
    run_dir, cache = tmp_path / "run", tmp_path / "cache"
    users_file = run_dir / ".generate.jsonl.notes.tmp"  # not of a writer's shape: not ours
    args = ["run", str(tmp_path / "config.yaml"), "--run-dir", str(run_dir)]

    first = start(tmp_path, args, cache, tmp_path / "1.log", "first")
    kill_after(first, cache, 1, tmp_path / "first.stderr")
    (left,) = run_dir.glob(".generate.jsonl.*.tmp")
    assert not (run_dir / "generate.jsonl").exists()
    users_file.write_text("mine")

    second = start(tmp_path, args, cache, tmp_path / "2.log", "second")
    assert second.wait(timeout=600) == 0, (tmp_path / "second.stderr").read_text()
    assert not left.exists()
    assert sorted(path.name for path in run_dir.glob(".*")) == [users_file.name]
    assert len(list(read_jsonl(run_dir / "generate.jsonl"))) == 3


def another_model(gguf: Path, target: Path) -> Path:
    """A copy of ``gguf`` whose ``general.name`` reads differently: another file that
    llama.cpp loads all the same."""
    shutil.copyfile(gguf, target)
    with target.open("r+b") as stream:
        head = stream.read(4096)
        key = head.index(b"general.name")
        value = key + len(b"general.name") + 4 + 8  # the type, then the string's length
        stream.seek(value)
        stream.write(b"X" if head[value : value + 1] != b"X" else b"Y")
    return target


@pytest.mark.slow
def test_another_gguf_under_the_same_name_is_asked_again_and_a_renamed_copy_is_not(
    tmp_path: Path, gguf_path: Path
):
    teacher_file = tmp_path / "teacher.gguf"
    shutil.copyfile(gguf_path, teacher_file)
    write_jsonl(tmp_path / "in.jsonl", [{"instruction": "Name a colour."},
                                        {"instruction": "Name a fruit."}])  # fmt: skip

    def run(model_path: Path) -> tuple[bool, dict, list]:
        data = small_llamacpp_config(max_tokens=4)
        data["teacher"]["model_path"] = str(model_path)  # the model name stays the default
        config = load_config(write_config(tmp_path / "config.yaml", data))
        [(result, skipped)] = run_pipeline(config, tmp_path / "run", tmp_path / "in.jsonl")
        outputs = list(read_jsonl(tmp_path / "run" / "generate.jsonl"))
        return skipped, result.stats.get("teacher", {}), outputs

    skipped, teacher, first = run(teacher_file)
    assert not skipped and teacher["teacher_calls"] == 2
    assert run(teacher_file)[0], "an unchanged rerun skips the stage"

    os.replace(another_model(gguf_path, tmp_path / "other.gguf"), teacher_file)
    skipped, teacher, _ = run(teacher_file)  # the same config, another file at the same path
    assert not skipped, "the stage was not redone for another model"
    assert (teacher["teacher_calls"], teacher["cache_hits"]) == (2, 0)

    renamed = shutil.copyfile(gguf_path, tmp_path / "renamed.gguf")
    skipped, teacher, outputs = run(renamed)
    assert (teacher["teacher_calls"], teacher["cache_hits"]) == (0, 2)
    assert outputs == first
