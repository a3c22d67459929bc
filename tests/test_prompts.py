"""Prompt files: the packaged ones, shadowed by a config's ``prompts_dir``.

The run test drives the embedded gemma for real: an override of the generate
prompt reaches the model, and ``run`` redoes exactly the stages that read it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support import small_llamacpp_config, write_config

from distillpipe.config import load_config
from distillpipe.errors import ConfigError
from distillpipe.io import read_jsonl, write_jsonl
from distillpipe.pipeline import run_pipeline
from distillpipe.prompts import PACKAGED, PROMPTS_DIR, Prompts, prompts_for

GENERATE = "generate/default.completion.jinja"


def override(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_an_override_shadows_the_packaged_file_of_the_same_name(tmp_path: Path):
    override(tmp_path, GENERATE, "Q: {{ instruction }}\nA:")
    override(tmp_path, "filters/refusals.txt", "nope\n\nnever\n")
    prompts = Prompts(tmp_path)
    assert prompts.render(GENERATE, instruction="Hi", input="", system="") == "Q: Hi\nA:"
    assert prompts.lines("filters/refusals.txt") == ("nope", "never")
    chat = "generate/default.chat.jinja"
    assert prompts.template(chat).render(instruction="Hi", input="") == PACKAGED.render(
        chat, instruction="Hi", input=""
    )


def test_an_edited_override_is_read_again(tmp_path: Path):
    path = override(tmp_path, "system/plain.txt", "one")
    prompts = Prompts(tmp_path)
    assert prompts.paragraphs("system/plain.txt") == ("one",)
    path.write_text("two, and longer")
    assert prompts.paragraphs("system/plain.txt") == ("two, and longer",)


def test_a_missing_prompt_names_both_folders(tmp_path: Path):
    missing = rf"no prompt template 'generate/mine.chat.jinja' in {tmp_path} or "
    with pytest.raises(ConfigError, match=missing):
        Prompts(tmp_path).template("generate/mine.chat.jinja")


def test_names_say_where_each_file_comes_from(tmp_path: Path):
    override(tmp_path, GENERATE, "x")
    override(tmp_path, "generate/mine.chat.jinja", "y")
    names = dict(Prompts(tmp_path).names())
    assert names[GENERATE] == tmp_path / GENERATE
    assert names["generate/mine.chat.jinja"] == tmp_path / "generate/mine.chat.jinja"
    assert names["evolve/depth.chat.jinja"] == PROMPTS_DIR / "evolve/depth.chat.jinja"
    assert not any(name.endswith(".py") or "__pycache__" in name for name in names)


def test_the_overrides_hash_covers_only_the_named_folders(tmp_path: Path):
    prompts = Prompts(tmp_path)
    assert prompts.overrides_hash(("generate",)) is None
    path = override(tmp_path, GENERATE, "x")
    first = prompts.overrides_hash(("generate", "system"))
    assert first is not None
    assert prompts.overrides_hash(("evolve",)) is None
    path.write_text("y")
    assert prompts.overrides_hash(("generate", "system")) not in (None, first)
    assert Prompts(None).overrides_hash(("generate",)) is None


def test_prompts_dir_resolves_against_the_config_folder(tmp_path: Path):
    override(tmp_path / "conf" / "mine", GENERATE, "x")
    path = write_config(
        tmp_path / "conf" / "c.yaml", {**small_llamacpp_config(), "prompts_dir": "mine"}
    )
    config = load_config(path)
    assert config.prompts_dir == str(tmp_path / "conf" / "mine")
    assert prompts_for(config).path(GENERATE) == tmp_path / "conf" / "mine" / GENERATE


def test_a_missing_prompts_dir_is_a_config_error_with_its_line(tmp_path: Path):
    path = write_config(tmp_path / "c.yaml", {**small_llamacpp_config(), "prompts_dir": "gone"})
    with pytest.raises(ConfigError, match=r"c\.yaml:\d+: no such folder: .*gone"):
        load_config(path)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "distillpipe", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_prompts_copy_then_list_shows_the_copy_as_the_source(tmp_path: Path):
    copied = cli("prompts", "copy", GENERATE, str(tmp_path / "mine"))
    assert copied.returncode == 0, copied.stderr
    assert (tmp_path / "mine" / GENERATE).read_text() == (PROMPTS_DIR / GENERATE).read_text()
    again = cli("prompts", "copy", GENERATE, str(tmp_path / "mine"))
    assert again.returncode == 1 and "already exists" in again.stderr
    config = write_config(tmp_path / "c.yaml", {**small_llamacpp_config(), "prompts_dir": "mine"})
    listed = dict(
        line.split("\t") for line in cli("prompts", "list", "-c", str(config)).stdout.splitlines()
    )
    assert listed[GENERATE] == str(tmp_path / "mine" / GENERATE)
    assert listed["generate/default.chat.jinja"] == "package"


@pytest.mark.slow
def test_run_redoes_exactly_the_stages_that_read_a_changed_override(tmp_path: Path):
    write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "instruction": "Name a colour."}])
    config_data = {
        **small_llamacpp_config(max_tokens=4, temperature=0.0),
        "prompts_dir": "mine",
        "cache": {"path": str(tmp_path / "cache.sqlite")},
        "filter": [{"type": "length", "reject_truncated": False}],
        "export": {"dataset_card": False},
    }
    mine = tmp_path / "mine"
    override(mine, GENERATE, "Question: {{ instruction }}\nAnswer:")
    path = write_config(tmp_path / "c.yaml", config_data)

    def run() -> dict[str, bool]:
        results = run_pipeline(load_config(path), tmp_path / "run", tmp_path / "in.jsonl")
        return {result.name: skipped for result, skipped in results}

    assert run() == {"generate": False, "filter": False, "export": False}
    [first] = read_jsonl(tmp_path / "run" / "generate.jsonl")
    assert run() == {"generate": True, "filter": True, "export": True}

    override(mine, "evolve/depth.completion.jinja", "unrelated {{ prompt }} {{ method }}")
    assert run() == {"generate": True, "filter": True, "export": True}

    override(mine, GENERATE, "Instruction: {{ instruction }}\nReply in French:")
    assert run() == {"generate": False, "filter": False, "export": False}
    [second] = read_jsonl(tmp_path / "run" / "generate.jsonl")
    # the model saw the new prompt: two more words, more prompt tokens
    tokens = [record["responses"][0]["usage"]["prompt_tokens"] for record in (first, second)]
    assert tokens[1] > tokens[0]
    [exported] = read_jsonl(tmp_path / "run" / "export" / "train.jsonl")
    assert exported["messages"][-1]["content"] == second["responses"][0]["text"].strip()
