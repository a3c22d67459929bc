"""The command line as a user meets it: real subprocesses, exit codes, one-line errors."""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
from fault_server import FaultServer
from support import small_llamacpp_config, write_config

from distillpipe.io import read_records, write_jsonl


def distillpipe(*args: str, env: dict[str, str], stdin: bytes | None = None):
    return subprocess.run(
        [sys.executable, "-m", "distillpipe", *args],
        input=stdin,
        capture_output=True,
        env=env,
        timeout=600,
    )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path / "config.yaml", small_llamacpp_config(max_tokens=4))


def test_a_malformed_line_fails_with_file_and_line_and_leaves_no_output(
    tmp_path: Path, config: Path, cli_env: dict[str, str]
):
    (tmp_path / "in.jsonl").write_text('{"instruction": "Name a colour."}\n{"instruction": \n')
    result = distillpipe("generate", "-c", str(config), "-i", str(tmp_path / "in.jsonl"),
                         "-o", str(tmp_path / "out" / "out.jsonl"), env=cli_env)  # fmt: skip
    assert result.returncode == 1
    error = result.stderr.decode().strip()
    assert "in.jsonl:2: invalid JSON" in error
    assert len(error.splitlines()) == 1
    assert list((tmp_path / "out").iterdir()) == []


def test_an_empty_input_gives_an_empty_output_and_says_so(
    tmp_path: Path, config: Path, cli_env: dict[str, str]
):
    (tmp_path / "in.jsonl").write_text("")
    result = distillpipe("generate", "-c", str(config), "-i", str(tmp_path / "in.jsonl"),
                         "-o", str(tmp_path / "out.jsonl"), env=cli_env)  # fmt: skip
    assert result.returncode == 0
    assert (tmp_path / "out.jsonl").read_bytes() == b""
    assert "holds no records" in result.stderr.decode()


def test_stdin_to_stdout(tmp_path: Path, config: Path, cli_env: dict[str, str]):
    result = distillpipe("generate", "-c", str(config), "-i", "-", "-o", "-", "-q",
                         env=cli_env, stdin=b'{"instruction": "Name a colour."}\n')  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    (line,) = result.stdout.splitlines()
    assert b'"responses":[{"text":' in line


def test_a_missing_api_key_is_reported_before_any_request(tmp_path: Path, cli_env: dict[str, str]):
    cli_env.pop("OPENAI_API_KEY", None)
    config = write_config(tmp_path / "config.yaml", {
        "teacher": {"backend": "openai", "model": "gpt-4o-mini",
                    "base_url": "http://api.example.invalid/v1"},
    })  # fmt: skip
    write_jsonl(tmp_path / "in.jsonl", [{"instruction": "Name a colour."}])
    result = distillpipe("generate", "-c", str(config), "-i", str(tmp_path / "in.jsonl"),
                         "-o", str(tmp_path / "out.jsonl"), env=cli_env)  # fmt: skip
    assert result.returncode == 1
    assert "No API key for http://api.example.invalid/v1: set OPENAI_API_KEY" in (
        result.stderr.decode()
    )
    assert not (tmp_path / "out.jsonl").exists()


def test_an_unknown_config_key_is_named(tmp_path: Path, cli_env: dict[str, str]):
    data = small_llamacpp_config()
    data["generate"]["temprature"] = 0.3
    config = write_config(tmp_path / "config.yaml", data)
    result = distillpipe("config", "validate", str(config), env=cli_env)
    assert result.returncode == 1
    assert "unknown key 'generate.temprature'" in result.stderr.decode()


def test_config_validate_and_show(config: Path, cli_env: dict[str, str]):
    assert distillpipe("config", "validate", str(config), env=cli_env).returncode == 0
    shown = distillpipe("config", "show", str(config), "--set", "generate.n=3", env=cli_env)
    assert shown.returncode == 0
    assert b"n: 3" in shown.stdout
    assert b"backend: llamacpp" in shown.stdout


def test_usage_errors_exit_2(cli_env: dict[str, str]):
    assert distillpipe("generate", "--no-such-flag", env=cli_env).returncode == 2


def test_run_skips_a_finished_stage_and_redoes_it_when_the_config_changes(
    tmp_path: Path, cli_env: dict[str, str]
):
    data = {**small_llamacpp_config(max_tokens=4), "input": "in.jsonl"}
    config = write_config(tmp_path / "config.yaml", data)
    write_jsonl(tmp_path / "in.jsonl", [{"instruction": "Name a colour."}])
    run_dir = tmp_path / "run"
    first = distillpipe("run", str(config), "--run-dir", str(run_dir), env=cli_env)
    assert first.returncode == 0, first.stderr.decode()
    assert [r["instruction"] for r in read_records(run_dir / "generate.jsonl")] == [
        "Name a colour."
    ]
    again = distillpipe("run", str(config), "--run-dir", str(run_dir), env=cli_env)
    assert "skipped: done" in again.stderr.decode()
    changed = distillpipe("run", str(config), "--run-dir", str(run_dir),
                          "--set", "generate.max_tokens=5", env=cli_env)  # fmt: skip
    assert "skipped" not in changed.stderr.decode()
    manifest = (run_dir / "manifest.json").read_text()
    assert '"max_tokens": 5' in manifest


def summary_row(stderr: str, stage: str) -> dict[str, str]:
    """The summary table's row for ``stage``, by column header (rich's default box)."""
    lines = stderr.splitlines()
    header = next(line for line in lines if "┃" in line and "stage" in line)
    row = next(line for line in lines if line.startswith("│") and f" {stage} " in line)
    names = [cell.strip() for cell in header.strip("┃").split("┃")]
    return dict(zip(names, (cell.strip() for cell in row.strip("│").split("│")), strict=True))


def test_the_summary_counts_calls_answered_by_an_identical_one(
    tmp_path: Path, fault_server: FaultServer, cli_env: dict[str, str]
):
    config = write_config(tmp_path / "config.yaml", {
        "name": "t", "teacher": {"backend": "openai", "model": "gpt-4o-mini", "api_key": "sk-test",
                                 "base_url": f"{fault_server.url}/v1", "mode": "completion"},
    })  # fmt: skip
    write_jsonl(tmp_path / "in.jsonl", 2 * [{"instruction": "Name a colour."}])
    wide = {**cli_env, "COLUMNS": "200"}  # the whole table on one line per row
    result = distillpipe("generate", "-c", str(config), "-i", str(tmp_path / "in.jsonl"),
                         "-o", str(tmp_path / "out.jsonl"), env=wide)  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    row = summary_row(result.stderr.decode(), "generate")
    assert row["teacher calls"] == "1" and row["duplicate calls"] == "1"
    assert row["cache hits"] == "0" and row["out"] == "2"


def test_cache_stats_and_clear(tmp_path: Path, config: Path, cli_env: dict[str, str]):
    write_jsonl(tmp_path / "in.jsonl", [{"instruction": "Name a colour."}])
    distillpipe("generate", "-c", str(config), "-i", str(tmp_path / "in.jsonl"),
                "-o", str(tmp_path / "out.jsonl"), env=cli_env)  # fmt: skip
    stats = distillpipe("cache", "stats", env=cli_env)
    assert "1 entries" in stats.stderr.decode()
    assert "gemma-3-270m-q4_k_m" in stats.stderr.decode()
    cleared = distillpipe("cache", "clear", env=cli_env)
    assert "removed 1 cached completions" in cleared.stderr.decode()


def test_a_secret_api_key_reaches_no_file_of_the_run(
    tmp_path: Path, llama_server: str, cli_env: dict[str, str]
):
    sentinel = "sk-SENTINEL-d1571ll-7e57"
    cli_env["DP_SENTINEL_API_KEY"] = sentinel
    config = write_config(tmp_path / "config.yaml", {
        "name": "secret", "input": "in.jsonl",
        "teacher": {"backend": "openai", "model": "gemma", "base_url": llama_server,
                    "api_key": "${DP_SENTINEL_API_KEY}", "concurrency": 2},
        "generate": {"max_tokens": 4},
    })  # fmt: skip
    write_jsonl(tmp_path / "in.jsonl", [{"instruction": "Name a colour."}])
    run_dir = tmp_path / "run"
    result = distillpipe("run", str(config), "--run-dir", str(run_dir), env=cli_env)
    assert result.returncode == 0, result.stderr.decode()
    shown = distillpipe("config", "show", str(config), env=cli_env)
    assert sentinel.encode() not in result.stdout + result.stderr + shown.stdout
    written = [p for p in [*run_dir.rglob("*"), *Path(cli_env["DISTILLPIPE_CACHE_DIR"]).rglob("*")]
               if p.is_file()]  # fmt: skip
    assert any(p.name == "manifest.json" for p in written)
    for path in written:
        assert sentinel.encode() not in path.read_bytes(), path


def test_a_truncated_gzip_input_fails_with_one_line_naming_file_and_line(
    tmp_path: Path, config: Path, cli_env: dict[str, str]
):
    whole = tmp_path / "whole.jsonl.gz"  # random text: every line holds compressed bytes
    write_jsonl(whole, [{"instruction": f"Say {secrets.token_hex(200)}."} for _ in range(10)])
    (tmp_path / "in.jsonl.gz").write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    result = distillpipe("generate", "-c", str(config), "-i", str(tmp_path / "in.jsonl.gz"),
                         "-o", str(tmp_path / "out" / "out.jsonl"), env=cli_env)  # fmt: skip
    assert result.returncode == 1
    (error,) = result.stderr.decode().strip().splitlines()
    assert re.search(r"in\.jsonl\.gz:\d+: truncated gzip input \(", error), error
    assert list((tmp_path / "out").iterdir()) == []


def test_a_run_writes_files_and_folders_the_umask_lets_the_team_read(
    tmp_path: Path, cli_env: dict[str, str]
):
    data = {**small_llamacpp_config(max_tokens=4), "input": "in.jsonl",
            "export": {"save_to_disk": True}}  # fmt: skip
    config = write_config(tmp_path / "config.yaml", data)
    write_jsonl(tmp_path / "in.jsonl", [{"instruction": "Name a colour."}])
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "distillpipe", "run", str(config), "--run-dir", str(run_dir)],
        capture_output=True, env=cli_env, timeout=600, umask=0o022,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    modes = {str(p.relative_to(run_dir)): p.stat().st_mode & 0o777 for p in run_dir.rglob("*")}
    assert {"generate.jsonl", "export.jsonl", "manifest.json", "export/train.jsonl"} <= set(modes)
    wrong = {name: oct(mode) for name, mode in modes.items()
             if mode != (0o755 if (run_dir / name).is_dir() else 0o644)}  # fmt: skip
    assert wrong == {}
    assert run_dir.stat().st_mode & 0o777 == 0o755


def test_run_starts_generate_from_a_saved_dataset_folder_and_skips_it_on_rerun(
    tmp_path: Path, cli_env: dict[str, str]
):
    rows = {"instruction": ["Name a colour.", "Name a fruit."]}
    datasets.Dataset.from_dict(rows).save_to_disk(tmp_path / "prompts")
    config = write_config(
        tmp_path / "config.yaml", {**small_llamacpp_config(max_tokens=4), "input": "prompts"}
    )
    run_dir = tmp_path / "run"
    first = distillpipe("run", str(config), "--run-dir", str(run_dir), env=cli_env)
    assert first.returncode == 0, first.stderr.decode()
    generated = list(read_records(run_dir / "generate.jsonl"))
    assert [r["instruction"] for r in generated] == rows["instruction"]
    assert all(len(r["responses"]) == 1 for r in generated)

    again = distillpipe("run", str(config), "--run-dir", str(run_dir), env=cli_env)
    assert again.returncode == 0, again.stderr.decode()
    assert "skipped: done" in again.stderr.decode()

    shutil.rmtree(tmp_path / "prompts")
    datasets.Dataset.from_dict({"instruction": ["Name a colour."]}).save_to_disk(
        tmp_path / "prompts"
    )
    changed = distillpipe("run", str(config), "--run-dir", str(run_dir), env=cli_env)
    assert changed.returncode == 0, changed.stderr.decode()
    assert "skipped" not in changed.stderr.decode()
    assert [r["instruction"] for r in read_records(run_dir / "generate.jsonl")] == [
        "Name a colour."
    ]


def test_run_reads_an_hf_id_through_the_seed_stage_and_skips_both_stages_on_rerun(
    tmp_path: Path, cli_env: dict[str, str]
):
    folder = tmp_path / "hub-like"
    folder.mkdir()
    write_jsonl(folder / "test.jsonl", [{"question": "Name a colour."}, {"question": "Hum."}])
    seeds = {"split": "test", "columns": {"instruction": "question"}}
    data = {**small_llamacpp_config(max_tokens=4), "input": f"hf:{folder}",
            "self_instruct": {"target": 0, "seeds": seeds}}  # fmt: skip
    config = write_config(tmp_path / "config.yaml", data)
    run_dir = tmp_path / "run"
    first = distillpipe("run", str(config), "--run-dir", str(run_dir), env=cli_env)
    assert first.returncode == 0, first.stderr.decode()
    assert [r["instruction"] for r in read_records(run_dir / "generate.jsonl")] == [
        "Name a colour.",
        "Hum.",
    ]
    again = distillpipe("run", str(config), "--run-dir", str(run_dir), env=cli_env)
    assert again.returncode == 0, again.stderr.decode()
    assert again.stderr.decode().count("skipped: done") == 2
