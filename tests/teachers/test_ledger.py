"""The spend ledger: what a run spent, per stage, read back by the next invocation."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from distillpipe.errors import InputError
from distillpipe.teachers import ledger as ledger_module
from distillpipe.teachers.ledger import SpendLedger


def test_each_record_is_on_disk_at_once_and_a_reopened_ledger_sums_it_per_stage(tmp_path: Path):
    path = tmp_path / "run" / "spend.jsonl"
    first = SpendLedger(path)
    assert first.before == {} and not path.exists(), "nothing spent, nothing written"
    first.record("seed", 0.25)
    first.record("generate", 0.5)
    first.record("generate", 0.125)
    # not closed: a process killed now has already handed every line to the kernel
    assert SpendLedger(path).before == {"seed": 0.25, "generate": 0.625}
    first.close()
    assert SpendLedger(path).total_before() == pytest.approx(0.875)


def test_a_line_torn_by_a_kill_is_skipped_and_cut_off_before_the_next_record(tmp_path: Path):
    path = tmp_path / "spend.jsonl"
    path.write_bytes(b'{"stage":"generate","usd":0.5}\n{"stage":"gene')
    ledger = SpendLedger(path)
    assert ledger.before == {"generate": 0.5}
    ledger.record("generate", 0.25)
    ledger.close()
    assert SpendLedger(path).before == {"generate": 0.75}
    assert path.read_bytes().count(b"\n") == 2


def test_a_bad_line_before_the_last_names_the_file_and_line(tmp_path: Path):
    path = tmp_path / "spend.jsonl"
    path.write_bytes(b'{"stage":"seed","usd":1}\nnonsense\n{"stage":"seed","usd":1}\n')
    with pytest.raises(InputError, match=r"spend\.jsonl:2: not a spend record"):
        SpendLedger(path)


def test_a_long_ledger_is_folded_into_one_line_per_stage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(ledger_module, "FOLD_AFTER_LINES", 5)
    path = tmp_path / "spend.jsonl"
    ledger = SpendLedger(path)
    for _ in range(4):
        ledger.record("generate", 0.25)
        ledger.record("filter", 0.5)
    ledger.close()
    folded = SpendLedger(path)
    assert folded.before == {"generate": 1.0, "filter": 2.0}
    lines = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert lines == [{"stage": "generate", "usd": 1.0}, {"stage": "filter", "usd": 2.0}]


def test_a_panel_members_spending_is_read_back_per_member_and_kept_when_folded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(ledger_module, "FOLD_AFTER_LINES", 3)
    path = tmp_path / "spend.jsonl"
    ledger = SpendLedger(path)
    for _ in range(2):
        ledger.record("generate", 0.25, "strong")
        ledger.record("generate", 0.125, "cheap")
        ledger.record("seed", 0.5)
    ledger.close()
    folded = SpendLedger(path)
    assert folded.before == {"generate": 0.75, "seed": 1.0}
    assert folded.before_by_teacher == {"strong": 0.5, "cheap": 0.25}
    assert len(path.read_bytes().splitlines()) == 3  # one line per stage and member
