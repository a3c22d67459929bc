"""The stage contract: what a stage expects to write and to ask, for its progress bar."""

from __future__ import annotations

from pathlib import Path

from support import write_config

from distillpipe.config import load_config
from distillpipe.stages import stage_named
from distillpipe.stages.base import expected_counts


def config_with(tmp_path: Path, **sections: object):
    data = {"name": "test", "teacher": {"backend": "llamacpp"}, **sections}
    return load_config(write_config(tmp_path / "config.yaml", data))


def test_generate_expects_a_record_and_n_calls_per_input_record(tmp_path: Path):
    config = config_with(tmp_path, generate={"n": 4})
    assert expected_counts(stage_named("generate"), config, 16) == (16, 64)
    assert expected_counts(stage_named("generate"), config, None) == (None, None)


def test_evolve_expects_at_most_every_call_of_every_round(tmp_path: Path):
    checks = {"equality": "teacher", "answer_check": True}
    last = config_with(tmp_path, evolve={"rounds": 2, "output": "last", "elimination": checks})
    assert expected_counts(stage_named("evolve"), last, 5) == (5, 5 * 2 * 3)
    cheap = {"equality": "similarity", "answer_check": False}
    every = config_with(tmp_path, evolve={"rounds": 3, "output": "all", "elimination": cheap})
    assert expected_counts(stage_named("evolve"), every, 5) == (None, 15)


def test_seed_expects_its_seeds_and_its_target_and_cannot_count_calls(tmp_path: Path):
    config = config_with(tmp_path, self_instruct={"target": 20})
    assert expected_counts(stage_named("seed"), config, 8) == (28, None)
    without = config_with(tmp_path, self_instruct={"target": 20, "include_seeds": False})
    assert expected_counts(stage_named("seed"), without, None) == (20, None)


def test_a_stage_without_expectations_writes_a_record_per_input_and_counts_no_calls(
    tmp_path: Path,
):
    config = config_with(tmp_path, filter=[{"type": "length"}])
    assert expected_counts(stage_named("filter"), config, 9) == (9, None)
