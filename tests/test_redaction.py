"""Secrets stay secret under every spelling: by name (keys, headers, variables, flags) and
by value (whatever came from a secret-named variable or stood at a secret-named key)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support import small_llamacpp_config, write_config

from distillpipe.io import write_jsonl
from distillpipe.redaction import REDACTED, is_secret_name, redact, secret_values

SECRET_NAMES = [
    "key", "api_key", "apikey", "apiKey", "API-KEY", "api-key", "x-api-key", "X-Api-Key",
    "x-goog-api-key", "Ocp-Apim-Subscription-Key", "Authorization", "Proxy-Authorization",
    "X-Auth-Token", "auth", "auth_token", "basic_auth", "token", "hf_token", "hfToken",
    "HF_TOKEN", "GITHUB_TOKEN", "OPENAI_KEY", "AZURE_OPENAI_KEY", "OPENAI_API_KEY",
    "OPENAIAPIKEY", "accesstoken", "secret", "my_secret", "client_secret", "AWS_SECRET_ACCESS_KEY",
    "secrets", "password", "DB_PASSWORD", "passwd", "credential", "credentials", "Cookie",
    "--api-key", "--hf-token", "keys",
]  # fmt: skip
NOT_SECRET_NAMES = [
    "max_tokens", "max_new_tokens", "equality_max_tokens", "answer_max_tokens", "tokens",
    "prompt_tokens", "tokenizer", "tokenizer_mode", "top_k", "top_p", "monkey", "hotkey",
    "author", "keywords", "api_key_env", "OPENAI_API_KEY_ENV", "count_with", "stop", "model",
    "base_url", "X-Trace", "anthropic-version", "OpenAI-Organization", "Content-Type", "",
]  # fmt: skip


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_names_with_a_secret_word_are_secret(name: str):
    assert is_secret_name(name)


@pytest.mark.parametrize("name", NOT_SECRET_NAMES)
def test_token_counts_tokenizers_and_variable_names_are_not(name: str):
    assert not is_secret_name(name)


def test_everything_under_a_secret_name_is_hidden_and_the_shape_kept():
    tree = {
        "headers": {"api-key": "az-123456", "X-Trace": "t-1"},
        "auth": {"user": "bob", "password": 123456, "enabled": True, "realm": None},
        "max_tokens": 256,
        "api_key_env": "OPENAI_API_KEY",
    }
    assert redact(tree) == {
        "headers": {"api-key": REDACTED, "X-Trace": "t-1"},
        "auth": {"user": REDACTED, "password": REDACTED, "enabled": True, "realm": None},
        "max_tokens": 256,
        "api_key_env": "OPENAI_API_KEY",
    }


def test_values_of_secret_flags_are_hidden_in_argument_lists():
    argv = ["vllm", "serve", "m", "--api-key", "sk-1", "--hf-token=hf_2", "--port", "8000"]
    assert redact(argv) == [
        "vllm", "serve", "m", "--api-key", "***", "--hf-token=***", "--port", "8000"
    ]  # fmt: skip
    assert secret_values({"command": argv}) == {"sk-1", "hf_2"}
    assert redact(["--password", "a=b", "--token", "-x"]) == ["--password", "***", "--token", "***"]


def test_known_secret_values_are_replaced_wherever_they_stand():
    tree = {"note": "uses sk-known-value twice: sk-known-value", "list": ["x sk-known-value"]}
    assert redact(tree, {"sk-known-value", "sk-known"}) == {
        "note": "uses *** twice: ***",
        "list": ["x ***"],
    }


def test_short_values_are_hidden_by_name_only():
    """Scrubbing a "1" from every string would mangle model names and paths."""
    tree = {"env": {"USE_AUTH": "1"}, "model": "Qwen2.5-1.5B"}
    assert redact(tree, secret_values(tree)) == {
        "env": {"USE_AUTH": REDACTED},
        "model": "Qwen2.5-1.5B",
    }


def test_secret_values_collects_what_stands_at_secret_names():
    tree = {
        "headers": {"x-api-key": "lit-x-123", "Authorization": "Bearer lit-auth-456"},
        "runtime_env": {"env_vars": {"my_secret": "lit-secret", "PATH": "/usr/bin"}},
        "api_key_env": "OPENAI_API_KEY",
    }
    assert secret_values(tree) == {"lit-x-123", "Bearer lit-auth-456", "lit-secret"}


# -- a real run: no sentinel in any file it, the export or the report writes ---------

FAULT_SERVER = Path(__file__).resolve().parent / "fault_server.py"
FROM_ENV = {"OPENAI_KEY": "sk-sentinel-openai-key-1", "AZURE_OPENAI_KEY": "az-sentinel-azure-2"}
LITERAL = {
    "my_secret": "lit-sentinel-my-secret-3",
    "auth_token": "lit-sentinel-auth-token-4",
    "x-api-key": "lit-sentinel-x-api-key-5",
    "Authorization": "Bearer lit-sentinel-authorization-6",
    "HF_TOKEN": "lit-sentinel-hf-token-7",
}
SENTINELS = [*FROM_ENV.values(), *LITERAL.values()]


def runtime_env() -> dict:
    """Secrets a user hands Ray's workers, under secret names and under plain ones."""
    return {
        "env_vars": {
            "OPENAI_KEY": "${OPENAI_KEY}",
            "DEPLOYMENT": "${AZURE_OPENAI_KEY}",  # a plain name: hidden by value only
            "my_secret": LITERAL["my_secret"],
            "auth_token": LITERAL["auth_token"],
        },
        "note": "rotated ${OPENAI_KEY} on monday",
    }


def run_report_and_show(tmp_path: Path, data: dict, env: dict[str, str]) -> tuple[Path, bytes]:
    """``run``, ``report`` and ``config show``; returns the run dir and all they printed."""
    write_jsonl(tmp_path / "in.jsonl", [{"instruction": "Name a colour."},
                                        {"instruction": "Name a fruit."}])  # fmt: skip
    # run_dir and name, not --run-dir: a managed server's log goes to <run_dir>/<name>/
    config = write_config(
        tmp_path / "config.yaml",
        {**data, "input": "in.jsonl", "run_dir": str(tmp_path), "name": "run"},
    )
    run_dir = tmp_path / "run"
    printed = b""
    for args in (("run", str(config)),
                 ("report", str(run_dir)), ("config", "show", str(config))):  # fmt: skip
        done = subprocess.run([sys.executable, "-m", "distillpipe", *args],
                              capture_output=True, env=env, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr.decode()
        printed += done.stdout + done.stderr
    assert b"rotated *** on monday" in printed  # config show: hidden by value inside text
    return run_dir, printed


def leaks(run_dir: Path, cache_dir: Path, printed: bytes) -> list[str]:
    written = [p for root in (run_dir, cache_dir) for p in root.rglob("*") if p.is_file()]
    assert {"manifest.json", "README.md", "report.html", "train.jsonl"} <= {p.name for p in written}
    found = [f"{s} printed" for s in SENTINELS if s.encode() in printed]
    for path in written:
        content = path.read_bytes()
        found += [f"{s} in {path}" for s in SENTINELS if s.encode() in content]
    return found


def test_a_run_on_the_embedded_gemma_writes_no_secret_anywhere(tmp_path: Path, cli_env: dict):
    data = {
        **small_llamacpp_config(),
        "teacher": {**small_llamacpp_config()["teacher"], "n_threads": 1},  # kind to 2 cores
        "executor": {"type": "local", "runtime_env": runtime_env()},
        "filter": [{"type": "length"}],
        "export": {},
    }
    run_dir, printed = run_report_and_show(tmp_path, data, {**cli_env, **FROM_ENV})
    assert leaks(run_dir, Path(cli_env["DISTILLPIPE_CACHE_DIR"]), printed) == []


def test_an_api_run_with_key_headers_and_a_managed_server_writes_no_secret_anywhere(
    tmp_path: Path, cli_env: dict
):
    """Azure's ``api-key`` header, ``x-api-key``, ``Authorization``, the key from
    ``api_key_env`` and a server launched with ``--api-key`` that prints its arguments
    (as vLLM does) into server.log."""
    data = {
        "name": "api", "seed": 7,
        "teacher": {
            "backend": "openai", "model": "gpt-4o-mini", "api_key_env": "OPENAI_KEY",
            "max_retries": 0,
            "headers": {"api-key": "${AZURE_OPENAI_KEY}", "x-api-key": LITERAL["x-api-key"],
                        "Authorization": LITERAL["Authorization"]},
            "launch": {"command": ["{python}", str(FAULT_SERVER), "--port", "{port}",
                                   "--api-key", "${OPENAI_KEY}"],
                       "env": {"HF_TOKEN": LITERAL["HF_TOKEN"]},
                       "startup_timeout": 60, "stop_timeout": 5},
        },
        "generate": {"max_tokens": 8},
        "executor": {"runtime_env": runtime_env()},
        "filter": [{"type": "length"}],
        "export": {},
    }  # fmt: skip
    run_dir, printed = run_report_and_show(tmp_path, data, {**cli_env, **FROM_ENV})
    log = (run_dir / "server.log").read_text()
    assert "fault server args:" in log and "'api_key': '***'" in log  # the key reached it
    assert leaks(run_dir, Path(cli_env["DISTILLPIPE_CACHE_DIR"]), printed) == []
