"""Temporaries beside a target: a killed writer's are removed by the next writer of that
target, a live writer's, another target's and a user's files never are."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from distillpipe.io import read_jsonl, write_jsonl
from distillpipe.temps import create_temp_dir, is_temp_of, remove_abandoned_temps

HOLD_A_WRITER = """
import sys, time
from distillpipe.io import JsonlWriter
writer = JsonlWriter(sys.argv[1])
writer.write({"instruction": "half written"})
print("writing", flush=True)
time.sleep(600)
"""


@pytest.fixture
def writers() -> Iterator[list[subprocess.Popen]]:
    started: list[subprocess.Popen] = []
    yield started
    for process in started:
        process.kill()
        process.wait()
        assert process.stdout is not None
        process.stdout.close()


def start_writer(target: Path, writers: list[subprocess.Popen]) -> subprocess.Popen:
    """A real process in the middle of writing ``target``."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD_A_WRITER, str(target)], stdout=subprocess.PIPE
    )
    writers.append(process)
    assert process.stdout is not None and process.stdout.readline() == b"writing\n"
    return process


def temps_of(target: Path) -> set[Path]:
    return {path for path in target.parent.iterdir() if is_temp_of(path.name, target.name)}


def test_a_killed_writers_temp_goes_and_a_live_writers_stays(tmp_path: Path, writers):
    target = tmp_path / "out.jsonl"
    killed = start_writer(target, writers)
    (abandoned,) = temps_of(target)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert abandoned.exists()

    start_writer(target, writers)  # the next writer of the target removes it as it starts
    (live,) = temps_of(target)
    assert live != abandoned and not abandoned.exists()
    assert remove_abandoned_temps(target) == []
    write_jsonl(target, [{"instruction": "done"}])  # beside the live writer, not over it
    assert list(read_jsonl(target)) == [{"instruction": "done"}]
    assert temps_of(target) == {live}


def test_only_the_targets_own_temporaries_are_considered(tmp_path: Path):
    target = tmp_path / "out.jsonl"
    others = [
        ".out.jsonl.gz.0123abcd.tmp",  # the temp of out.jsonl.gz
        ".other.jsonl.0123abcd.tmp",  # of another file
        ".out.jsonl.notes.tmp",  # a user's file
        "out.jsonl.0123abcd.tmp",
        ".out.jsonl.0123abcd.tmp.bak",
    ]
    for name in others:
        (tmp_path / name).write_text("keep me")
    (tmp_path / ".out.jsonl.k2_x9abq.tmp").write_text("left by a killed writer (mkstemp name)")
    assert remove_abandoned_temps(target) == [tmp_path / ".out.jsonl.k2_x9abq.tmp"]
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(others)


def test_an_abandoned_folder_goes_and_a_locked_one_stays(tmp_path: Path):
    target = tmp_path / "export"
    abandoned = tmp_path / ".export.deadbeef.tmp"
    (abandoned / "data").mkdir(parents=True)
    (abandoned / "data" / "train.jsonl").write_text("{}\n")
    lock, staging = create_temp_dir(target)  # removes the abandoned one as it starts
    try:
        assert not abandoned.exists()
        assert remove_abandoned_temps(target) == []
        assert staging.is_dir()
    finally:
        os.close(lock)
    assert remove_abandoned_temps(target) == [staging]
