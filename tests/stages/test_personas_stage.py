"""The personas stage on the embedded gemma: seeded persona × topic pairs, a cap per
persona, persona-tagged questions deduplicated against the input; a rerun asks nothing
and writes the same bytes."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import llama_cpp
import pytest
from support import small_llamacpp_config, write_config

from distillpipe.config import load_config
from distillpipe.errors import ConfigError
from distillpipe.inputs import config_hash
from distillpipe.io import read_jsonl, read_records, write_jsonl
from distillpipe.runner import run_stage
from distillpipe.stages import stage_named
from distillpipe.stages.personas import PersonasOptions, draw_pairs

PERSONAS = ["an amateur astronomer", "a student cook", "a retired nurse"]
SEEDS = [
    {"id": "s1", "instruction": "Explain what a prime number is.", "origin": {"stage": "input"}},
    {"id": "s2", "instruction": "How do stars form?",
     "origin": {"stage": "topics", "path": ["Astronomy", "Stars"]}},
    {"id": "s3", "instruction": "Give three tips for baking bread.", "origin": {"stage": "input"}},
]  # fmt: skip


def personas_config(tmp_path: Path, gguf: Path, **personas: object) -> Path:
    (tmp_path / "personas.txt").write_text("\n".join(PERSONAS) + "\n")
    data = small_llamacpp_config()
    data["teacher"]["model_path"] = str(gguf)
    data["personas"] = {
        "file": "personas.txt", "pairs": 4, "per_persona": 2, "max_tokens": 32,
        "keep_truncated": True, **personas,
    }  # fmt: skip
    return write_config(tmp_path / "config.yaml", data)


def test_a_persona_run_gives_persona_tagged_questions_and_a_rerun_asks_nothing(
    tmp_path: Path, gguf_path: Path, monkeypatch: pytest.MonkeyPatch
):
    sent: list[str] = []
    original = llama_cpp.Llama.create_completion

    def observed(self, prompt, *args, **kwargs):
        sent.append(prompt)
        return original(self, prompt, *args, **kwargs)

    monkeypatch.setattr(llama_cpp.Llama, "create_completion", observed)
    config = load_config(personas_config(tmp_path, gguf_path))
    assert config.section("personas").file == str(tmp_path / "personas.txt")  # beside the config
    write_jsonl(tmp_path / "in.jsonl", SEEDS)
    stage = stage_named("personas")
    first = run_stage(
        stage, config, tmp_path / "in.jsonl", tmp_path / "first.jsonl",
        rejected_path=tmp_path / "first.rejected.jsonl",
    )  # fmt: skip

    out = list(read_records(tmp_path / "first.jsonl"))
    assert out[:3] == SEEDS  # the input passes through first
    asked = out[3:]
    rejected = list(read_jsonl(tmp_path / "first.rejected.jsonl"))
    assert len(asked) + len(rejected) == 4 == len(sent)  # four pairs, one call each
    assert asked, "gemma wrote no usable question at all"
    by_persona = Counter(r["origin"]["persona"] for r in [*asked, *rejected])
    assert set(by_persona) <= set(PERSONAS) and max(by_persona.values()) <= 2  # the cap
    seed_ids = {seed["id"]: seed for seed in SEEDS}
    for record in asked:
        origin = record["origin"]
        assert origin["stage"] == "personas" and origin["persona"] in PERSONAS
        parent = seed_ids[origin["parent_id"]]
        assert origin.get("path") == parent["origin"].get("path")  # a topic's path goes on
        assert record["instruction"] == record["instruction"].strip() != ""
        assert "\n" not in record["instruction"]
    assert len({r["id"] for r in out}) == len(out)  # no question repeats another or a seed
    for row in rejected:
        assert row["reject"]["filter"].startswith("personas.")
    stats = first.stats["personas"]
    assert stats["counts"]["pairs"] == 4 and stats["counts"]["kept"] == len(asked)
    assert sum(stats["per_persona"].values()) == len(asked)

    again = run_stage(
        stage, config, tmp_path / "in.jsonl", tmp_path / "second.jsonl",
        rejected_path=tmp_path / "second.rejected.jsonl",
    )  # fmt: skip
    assert again.stats["teacher"]["teacher_calls"] == 0 and len(sent) == 4
    assert (tmp_path / "first.jsonl").read_bytes() == (tmp_path / "second.jsonl").read_bytes()
    assert (tmp_path / "first.rejected.jsonl").read_bytes() == (
        tmp_path / "second.rejected.jsonl"
    ).read_bytes()


def test_the_command_asks_about_the_config_s_topics_and_keeps_jsonl_fields(
    tmp_path: Path, gguf_path: Path, cli_env: dict
):
    (tmp_path / "people.jsonl").write_text(
        '{"persona": "an amateur astronomer", "traits": "owns a telescope"}\n'
    )
    config = personas_config(
        tmp_path, gguf_path, file="people.jsonl", topics=["comets"], pairs=1,
        keep_input=False,
    )  # fmt: skip
    command = [sys.executable, "-m", "distillpipe", "personas", "-c", str(config), "-q"]
    done = subprocess.run(
        [*command, "-o", "p.jsonl"], env=cli_env, capture_output=True, text=True, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    rows = [*read_jsonl(tmp_path / "p.jsonl"), *read_jsonl(tmp_path / "p.rejected.jsonl")]
    (row,) = rows
    assert row["origin"]["persona"] == "an amateur astronomer"
    assert row["origin"]["topic"] == "comets" and "parent_id" not in row["origin"]
    if "reject" not in row:
        assert row["meta"]["persona"] == {
            "persona": "an amateur astronomer", "traits": "owns a telescope",
        }  # fmt: skip


def options(**values: object) -> PersonasOptions:
    return PersonasOptions(file="p.txt", **values)


def test_pairs_are_seeded_capped_per_persona_and_spread_over_the_personas():
    pairs = draw_pairs(5, 10, options(pairs=12, per_persona=3), seed=1)
    assert len(pairs) == 12 == len(set(pairs))
    per_persona = Counter(persona for persona, _ in pairs)
    assert set(per_persona) == set(range(5)) and max(per_persona.values()) <= 3
    assert draw_pairs(5, 10, options(pairs=12, per_persona=3), seed=1) == pairs
    assert draw_pairs(5, 10, options(pairs=12, per_persona=3), seed=2) != pairs


def test_the_cap_and_the_subjects_bound_the_pairs():
    assert len(draw_pairs(2, 10, options(pairs=50, per_persona=3), seed=0)) == 6
    assert sorted(draw_pairs(2, 2, options(pairs=50), seed=0)) == [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_no_topics_and_no_input_records_is_a_one_line_error(tmp_path: Path, gguf_path: Path):
    config = load_config(personas_config(tmp_path, gguf_path))
    write_jsonl(tmp_path / "empty.jsonl", [])
    with pytest.raises(ConfigError, match=r"personas: nothing to ask about"):
        run_stage(stage_named("personas"), config, tmp_path / "empty.jsonl", tmp_path / "o.jsonl")


def test_a_persona_section_without_a_file_names_its_key(tmp_path: Path):
    data = small_llamacpp_config()
    data["personas"] = {"pairs": 3}
    with pytest.raises(ConfigError, match=r"config.yaml:\d+: personas.file: Field required"):
        load_config(write_config(tmp_path / "config.yaml", data))


def test_an_edited_persona_file_changes_the_stage_s_hash(tmp_path: Path, gguf_path: Path):
    config = load_config(personas_config(tmp_path, gguf_path))
    stage = stage_named("personas")
    before = config_hash(stage, config)
    (tmp_path / "personas.txt").write_text("someone else\n")
    assert config_hash(stage, config) != before  # `run` redoes the stage
