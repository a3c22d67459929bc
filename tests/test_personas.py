"""Persona lists: a text file, one a line, or JSONL with a `persona` field and any others."""

from __future__ import annotations

from pathlib import Path

import pytest

from distillpipe.errors import InputError
from distillpipe.personas import Persona, load_personas

SHIPPED = Path(__file__).parent.parent / "configs" / "data"


def test_a_text_file_holds_one_persona_a_line_comments_and_blanks_skipped(tmp_path: Path):
    path = tmp_path / "p.txt"
    path.write_text("# who asks\n a retired nurse \n\nan astronomer\n")
    assert load_personas(path) == [Persona("a retired nurse"), Persona("an astronomer")]


def test_a_jsonl_file_keeps_the_other_fields_as_traits(tmp_path: Path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"persona": "a baker", "traits": ["busy", "numerate"], "age": 41}\n')
    (persona,) = load_personas(path)
    assert persona == Persona("a baker", {"traits": ["busy", "numerate"], "age": 41})
    assert persona.traits() == "traits: busy, numerate; age: 41"


def test_the_shipped_examples_load():
    assert len(load_personas(SHIPPED / "personas.txt")) == 12
    assert all(p.fields for p in load_personas(SHIPPED / "personas.jsonl"))


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("p.jsonl", '{"persona": "a"}\n{"name": "b"}\n', r"p\.jsonl:2: needs a `persona` field"),
        ("p.jsonl", '{"persona": "a"}\nnot json\n', r"p\.jsonl:2: invalid JSON"),
        ("p.txt", "# nothing\n\n", r"p\.txt: holds no personas"),
        ("p.txt", "ok\n" + "x" * 1001 + "\n", r"p\.txt:2: a persona of 1001 characters"),
    ],
)
def test_bad_persona_files_are_one_line_errors_naming_file_and_line(
    tmp_path: Path, name: str, text: str, message: str
):
    (tmp_path / name).write_text(text)
    with pytest.raises(InputError, match=message):
        load_personas(tmp_path / name)


def test_a_missing_file_is_named(tmp_path: Path):
    with pytest.raises(InputError, match=r"nope\.txt: no such persona file"):
        load_personas(tmp_path / "nope.txt")
