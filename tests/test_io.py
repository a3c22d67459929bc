import gzip
import subprocess
import sys
from pathlib import Path

import pytest

from distillpipe.errors import InputError
from distillpipe.io import JsonlWriter, read_jsonl, read_records, write_jsonl


def test_round_trip_plain_and_gzip(tmp_path: Path):
    records = [{"instruction": f"task {i}", "meta": {"i": i}} for i in range(5)]
    for name in ("out.jsonl", "out.jsonl.gz"):
        assert write_jsonl(tmp_path / name, records) == 5
        back = list(read_records(tmp_path / name))
        assert [r["meta"]["i"] for r in back] == list(range(5))
        assert all(len(r["id"]) == 16 for r in back)
    with gzip.open(tmp_path / "out.jsonl.gz") as stream:
        assert stream.read().count(b"\n") == 5


def test_objects_come_back_as_written_and_blank_lines_are_skipped(tmp_path: Path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"a": 1}\n\n   \n{"b": [2]}\n')
    assert list(read_jsonl(path)) == [{"a": 1}, {"b": [2]}]


def test_a_whitespace_instruction_is_no_instruction(tmp_path: Path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"instruction": " \\t "}\n')
    with pytest.raises(InputError, match=r"in\.jsonl:1: record has no 'instruction'"):
        list(read_records(path))


def test_a_malformed_line_names_file_and_line(tmp_path: Path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"instruction": "ok"}\n\n{"instruction": "bad",\n')
    with pytest.raises(InputError, match=r"in\.jsonl:3: invalid JSON"):
        list(read_records(path))


def test_a_record_without_instruction_names_file_and_line(tmp_path: Path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"instruction": "ok"}\n{"prompt": "no instruction"}\n')
    with pytest.raises(InputError, match=r"in\.jsonl:2: record has no 'instruction'"):
        list(read_records(path))


def test_a_json_value_that_is_not_an_object_is_rejected(tmp_path: Path):
    path = tmp_path / "in.jsonl"
    path.write_text("[1, 2]\n")
    with pytest.raises(InputError, match=r"in\.jsonl:1: expected a JSON object, got list"):
        list(read_records(path))


def test_a_failed_write_leaves_neither_output_nor_temporary_file(tmp_path: Path):
    target = tmp_path / "out.jsonl"
    with pytest.raises(RuntimeError), JsonlWriter(target) as writer:
        writer.write({"instruction": "half"})
        raise RuntimeError("stage failed")
    assert list(tmp_path.iterdir()) == []


def test_an_existing_output_survives_a_failed_rewrite(tmp_path: Path):
    target = tmp_path / "out.jsonl"
    write_jsonl(target, [{"instruction": "old"}])
    with pytest.raises(RuntimeError), JsonlWriter(target) as writer:
        writer.write({"instruction": "new"})
        raise RuntimeError("stage failed")
    assert [r["instruction"] for r in read_records(target)] == ["old"]


def test_dash_reads_stdin_and_writes_stdout():
    code = (
        "from distillpipe.io import read_records, write_jsonl;"
        "write_jsonl('-', ({'n': len(r['instruction'])} for r in read_records('-')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        input=b'{"instruction": "abc"}\n{"instruction": "abcdef"}\n',
        capture_output=True,
        check=True,
    )
    assert result.stdout == b'{"n":3}\n{"n":6}\n'


def test_a_truncated_gzip_input_names_the_line_after_the_last_complete_one(tmp_path: Path):
    whole = tmp_path / "whole.jsonl.gz"
    write_jsonl(whole, [{"instruction": f"task {i}: {i * 7919 % 10007}"} for i in range(400)])
    truncated = tmp_path / "in.jsonl.gz"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    complete = []
    with pytest.raises(InputError) as raised:
        for record in read_records(truncated):
            complete.append(record)
    assert 0 < len(complete) < 400
    assert str(raised.value).startswith(f"{truncated}:{len(complete) + 1}: truncated gzip input (")
    assert len(str(raised.value).splitlines()) == 1


def test_a_file_that_is_not_gzip_is_a_corrupt_gzip_input_at_line_1(tmp_path: Path):
    path = tmp_path / "in.jsonl.gz"
    path.write_text('{"instruction": "not compressed"}\n')
    with pytest.raises(InputError, match=r"in\.jsonl\.gz:1: corrupt gzip input \("):
        list(read_records(path))


WRITE_EACH_KIND = """
import sys
from pathlib import Path
from distillpipe.io import atomic_write_bytes, write_jsonl
folder = Path(sys.argv[1])
write_jsonl(folder / "plain.jsonl", [{"instruction": "x"}])
write_jsonl(folder / "packed.jsonl.gz", [{"instruction": "x"}])
atomic_write_bytes(folder / "manifest.json", b"{}")
"""


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_get_the_mode_the_umask_gives(tmp_path: Path, umask: int, mode: int):
    subprocess.run([sys.executable, "-c", WRITE_EACH_KIND, str(tmp_path)], umask=umask, check=True)
    written = {path.name: path.stat().st_mode & 0o777 for path in tmp_path.iterdir()}
    assert written == dict.fromkeys(("plain.jsonl", "packed.jsonl.gz", "manifest.json"), mode)
