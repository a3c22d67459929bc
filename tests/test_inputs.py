"""What a stage reads: records JSONL as it is, any other `seed` input through the seed
loaders; and the input hash the manifest compares."""

from __future__ import annotations

from pathlib import Path

from support import write_config

from distillpipe.config import load_config
from distillpipe.inputs import input_hash, stage_records
from distillpipe.io import file_hash, write_jsonl
from distillpipe.stages import stage_named


def config_with(path: Path, **sections: object):
    return load_config(write_config(path, {"teacher": {"backend": "llamacpp"}, **sections}))


def test_a_records_file_is_read_as_records_and_hashed_by_its_bytes(tmp_path: Path):
    path = tmp_path / "in.jsonl"
    write_jsonl(path, [{"instruction": "Name a colour.", "responses": [], "meta": {"k": 1}}])
    config, generate = config_with(tmp_path / "c.yaml"), stage_named("generate")
    (record,) = stage_records(generate, path, config)
    assert record["meta"] == {"k": 1} and record["responses"] == []  # carried through
    assert input_hash(generate, path, config) == file_hash(path)


def test_a_csv_before_generate_goes_through_the_seed_loaders_and_their_columns(tmp_path: Path):
    path = tmp_path / "tasks.csv"
    path.write_text("question,context\nName a colour.,\nAdd these.,2 and 3\n")
    seeds = {"columns": {"instruction": "question", "input": "context"}}
    config = config_with(tmp_path / "c.yaml", self_instruct={"seeds": seeds})
    generate = stage_named("generate")
    records = list(stage_records(generate, path, config))
    assert [(r["instruction"], r.get("input")) for r in records] == [
        ("Name a colour.", None),
        ("Add these.", "2 and 3"),
    ]
    other_columns = {"columns": {"instruction": "question", "input": None}}
    changed = config_with(tmp_path / "other.yaml", self_instruct={"seeds": other_columns})
    assert input_hash(generate, path, config) != input_hash(generate, path, changed)
    # The seed stage's own config hash covers self_instruct.seeds: its input hash is the file's.
    assert input_hash(stage_named("seed"), path, config) == file_hash(path)
