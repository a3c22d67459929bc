"""The magpie stage: instructions the model writes from its chat template's pre-query alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import llama_cpp
import orjson
import pytest
from support import small_llamacpp_config, write_config

from distillpipe.chat_templates import gguf_chat_template
from distillpipe.config import load_config
from distillpipe.errors import ConfigError
from distillpipe.io import read_records, write_jsonl
from distillpipe.runner import run_stage
from distillpipe.stages import stage_named

SEED = {"id": "seed", "instruction": "Name a colour.", "origin": {"stage": "input"}}


def magpie_config(tmp_path: Path, gguf: Path, **magpie: object) -> Path:
    data = small_llamacpp_config()
    data["teacher"]["model_path"] = str(gguf)
    data["magpie"] = {"count": 3, "max_tokens": 4, "keep_truncated": True, **magpie}
    return write_config(tmp_path / "config.yaml", data)


def test_magpie_sends_only_the_pre_query_and_each_draw_has_its_own_key(
    tmp_path: Path, gemma_with_chat_template: Path, monkeypatch: pytest.MonkeyPatch
):
    sent: list[tuple[str, int]] = []
    original = llama_cpp.Llama.create_completion

    def observed(self, prompt, *args, **kwargs):
        sent.append((prompt, kwargs["seed"]))
        return original(self, prompt, *args, **kwargs)

    monkeypatch.setattr(llama_cpp.Llama, "create_completion", observed)
    config = load_config(magpie_config(tmp_path, gemma_with_chat_template))
    write_jsonl(tmp_path / "in.jsonl", [SEED])
    stage = stage_named("magpie")
    first = run_stage(stage, config, tmp_path / "in.jsonl", tmp_path / "first.jsonl")

    out = list(read_records(tmp_path / "first.jsonl"))
    assert out[0] == SEED  # input records pass through first
    stats = first.stats["magpie"]
    assert stats["drawn"] == len(sent) == first.stats["teacher"]["teacher_calls"]
    assert stats["kept"] == len(out) - 1 == 3
    pre_query = gguf_chat_template(gemma_with_chat_template).pre_query()
    assert {prompt for prompt, _ in sent} == {"<start_of_turn>user\n"} == {pre_query}
    assert len({seed for _, seed in sent}) == len(sent)  # n draws, n keys, n seeds
    for sample, record in enumerate(out[1:]):
        assert record["instruction"].strip() == record["instruction"] != ""
        assert record["origin"] == {
            "stage": "magpie",
            "sample": sample,
            "model": "gemma-3-270m-q4_k_m",
        }

    again = run_stage(stage, config, tmp_path / "in.jsonl", tmp_path / "second.jsonl")
    assert again.stats["teacher"]["teacher_calls"] == 0 and len(sent) == stats["drawn"]
    assert (tmp_path / "first.jsonl").read_bytes() == (tmp_path / "second.jsonl").read_bytes()


def test_run_starts_from_magpie_without_an_input_and_rejects_cut_draws(
    tmp_path: Path, gemma_with_chat_template: Path, cli_env: dict
):
    config = magpie_config(
        tmp_path, gemma_with_chat_template, count=2, max_samples=2, max_tokens=1,
        keep_truncated=False,
    )  # fmt: skip
    run = [sys.executable, "-m", "distillpipe", "run", str(config), "-q"]
    done = subprocess.run(run, env=cli_env, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    run_dir = tmp_path / "runs" / "test"
    rejected = [
        orjson.loads(line) for line in (run_dir / "magpie.rejected.jsonl").read_bytes().splitlines()
    ]
    assert [r["reject"]["filter"] for r in rejected] == ["magpie.truncated"] * 2
    assert [r["origin"]["sample"] for r in rejected] == [0, 1]
    manifest = orjson.loads((run_dir / "manifest.json").read_bytes())
    assert manifest["stages"]["magpie"]["stats"]["magpie"]["drawn"] == 2

    # its own command, answered from the same cache
    command = [
        sys.executable,
        "-m",
        "distillpipe",
        "magpie",
        "-c",
        str(config),
        "-o",
        "m.jsonl",
        "-q",
    ]
    done = subprocess.run(command, env=cli_env, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "m.rejected.jsonl").read_bytes().count(b"magpie.truncated") == 2


def test_magpie_needs_a_teacher_that_takes_raw_prompts(tmp_path: Path, gguf_path: Path):
    data = small_llamacpp_config()
    data["teacher"]["mode"] = "chat"
    data["magpie"] = {"count": 1}
    with pytest.raises(ConfigError, match=r"config.yaml:\d+: magpie: Magpie sends raw prompts"):
        load_config(write_config(tmp_path / "config.yaml", data))
