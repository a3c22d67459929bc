"""run_stage: one stage from a file into a file, atomically, with the collector kept off
the objects that exist before it streams."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from stages.killing import kill_after, start
from support import small_llamacpp_config, write_config

from distillpipe.config import load_config
from distillpipe.io import read_jsonl, write_jsonl
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
