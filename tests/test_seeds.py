"""Seed tasks from JSONL (both shapes), CSV, plain text and Hugging Face datasets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import datasets
import pytest

from distillpipe.errors import InputError
from distillpipe.records import record_id
from distillpipe.seeds import SeedColumns, SeedSourceConfig, load_seeds, source_hash

SELF_INSTRUCT_ROW = {
    "id": "seed_task_0",
    "name": "antonym",
    "instruction": "Give the antonym of the word.",
    "instances": [{"input": "happy", "output": "sad"}, {"input": "up", "output": "down"}],
    "is_classification": False,
}


def write_lines(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_self_instruct_seed_tasks_keep_the_first_instance_and_the_classification_flag(tmp_path):
    path = write_lines(tmp_path / "seed_tasks.jsonl", [SELF_INSTRUCT_ROW])
    (record,) = load_seeds(path)
    assert record == {
        "id": record_id("Give the antonym of the word.", "happy"),
        "instruction": "Give the antonym of the word.",
        "input": "happy",
        "origin": {"stage": "input"},
        "meta": {"output": "sad", "is_classification": False},
    }


def test_flat_jsonl_rows_and_blank_lines(tmp_path):
    path = tmp_path / "seeds.jsonl"
    path.write_text('{"instruction": "Name a fruit."}\n\n{"instruction": " Add. ", "input": 3}\n')
    records = list(load_seeds(path))
    assert [(r["instruction"], r.get("input")) for r in records] == [
        ("Name a fruit.", None),
        ("Add.", "3"),
    ]


def test_a_reference_rides_along_for_the_verification_filters(tmp_path):
    path = tmp_path / "seeds.jsonl"
    tests = {"test_list": ["assert add(1, 2) == 3"]}
    rows = [
        {"instruction": "Write add.", "reference": tests},
        {"instruction": "2+2?", "reference": 4},
    ]
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    assert [r.get("reference") for r in load_seeds(path)] == [tests, 4]


def test_csv_with_a_column_mapping(tmp_path):
    path = tmp_path / "seeds.csv"
    path.write_text("prompt,context,answer,cls\nSay hi.,,hi,no\nSum the numbers.,1 2,3,yes\n")
    columns = SeedColumns(
        instruction="prompt", input="context", output="answer", is_classification="cls"
    )
    records = list(load_seeds(path, SeedSourceConfig(columns=columns)))
    assert records[0]["meta"] == {"output": "hi", "is_classification": False}
    assert records[1]["input"] == "1 2" and records[1]["meta"]["is_classification"] is True


def test_plain_text_skips_blank_lines_and_comments(tmp_path):
    path = tmp_path / "seeds.txt"
    path.write_text("# my seeds\nName a colour.\n\n  Write a limerick.  \n")
    assert [r["instruction"] for r in load_seeds(path)] == ["Name a colour.", "Write a limerick."]


def test_a_dataset_saved_to_disk_with_split_and_columns(tmp_path):
    rows = {"question": ["What is 2+2?", "Name a planet."], "context": ["", "our system"]}
    datasets.DatasetDict({"test": datasets.Dataset.from_dict(rows)}).save_to_disk(tmp_path / "ds")
    source = SeedSourceConfig(
        split="test", columns=SeedColumns(instruction="question", input="context")
    )
    records = list(load_seeds(tmp_path / "ds", source))
    assert [(r["instruction"], r.get("input")) for r in records] == [
        ("What is 2+2?", None),
        ("Name a planet.", "our system"),
    ]


def test_load_dataset_on_a_local_folder_of_data_files(tmp_path):
    folder = tmp_path / "hub-like"
    folder.mkdir()
    write_lines(folder / "train.jsonl", [{"instruction": "Name a fruit."}, {"instruction": "Hum."}])
    records = list(load_seeds(f"hf:{folder}"))
    assert [r["instruction"] for r in records] == ["Name a fruit.", "Hum."]
    with pytest.raises(InputError, match=r"no split 'validation'|validation"):
        list(load_seeds(f"hf:{folder}", SeedSourceConfig(split="validation")))


def test_a_dataset_folder_is_hashed_by_its_content_and_how_it_is_read(tmp_path):
    rows = {"instruction": ["Name a fruit.", "Hum."]}
    datasets.Dataset.from_dict(rows).save_to_disk(tmp_path / "ds")
    first = source_hash(tmp_path / "ds", SeedSourceConfig())
    shutil.copytree(tmp_path / "ds", tmp_path / "moved")
    (tmp_path / "moved" / ".DS_Store").write_text("a file manager's, not the dataset's")
    assert source_hash(f"hf:{tmp_path / 'moved'}", SeedSourceConfig()) == first
    assert source_hash(tmp_path / "ds", SeedSourceConfig(split="test")) != first
    columns = SeedColumns(instruction="instruction", input=None)
    assert source_hash(tmp_path / "ds", SeedSourceConfig(columns=columns)) != first
    shutil.rmtree(tmp_path / "ds")
    datasets.Dataset.from_dict({"instruction": ["Name a fruit.", "Hum!"]}).save_to_disk(
        tmp_path / "ds"
    )
    assert source_hash(tmp_path / "ds", SeedSourceConfig()) != first


def test_a_missing_local_source_is_no_such_file(tmp_path):
    with pytest.raises(InputError, match=r"nowhere\.csv: no such file"):
        source_hash(tmp_path / "nowhere.csv", SeedSourceConfig())


MALFORMED = [
    ("bad.jsonl", '{"instruction": "ok"}\n{"instruction": ""}\n', "bad.jsonl:2: seed has no"),
    ("bad.jsonl", '{"instruction": "ok"}\n{oops\n', "bad.jsonl:2: invalid JSON"),
    ("bad.jsonl", '{"instruction": "a", "instances": 1}\n', "bad.jsonl:1: 'instances' must be"),
    ("bad.jsonl", '{"instruction": "ok", "input": ["a"]}\n', "bad.jsonl:1: 'input' must be text"),
    (
        "bad.jsonl",
        '{"instruction": "ok", "is_classification": "maybe"}\n',
        "bad.jsonl:1: 'is_classification' must be true or false",
    ),
    ("bad.csv", "prompt\nx\n", "bad.csv:1: no column 'instruction' .*columns: prompt"),
    ("bad.csv", "instruction,input\nfine,\ntoo,many,fields\n", "bad.csv:3: more fields than"),
    ("seeds.parquet", "", "seeds.parquet: cannot tell the seed format"),
]


@pytest.mark.parametrize(("name", "content", "error"), MALFORMED)
def test_malformed_seeds_fail_with_file_line_and_reason(tmp_path, name, content, error):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(InputError, match=error):
        list(load_seeds(path))
