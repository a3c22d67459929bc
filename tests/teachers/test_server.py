"""The managed local server, launched for real: llama.cpp's OpenAI-compatible server on gemma.

The launched command is ``python -m llama_cpp.server`` (what ``vllm serve`` is on
a GPU machine); distillpipe starts it, waits for it, generates through it and
stops it, and these tests check the process is really gone afterwards.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from support import write_config

from distillpipe.config import load_config
from distillpipe.dispatch import Dispatcher
from distillpipe.errors import ConfigError, ServerError
from distillpipe.io import read_records, write_jsonl
from distillpipe.models import file_fingerprint
from distillpipe.teachers.base import Request, SamplingParams, TeacherContext
from distillpipe.teachers.openai import OpenAIOptions, OpenAITeacher
from distillpipe.teachers.server import LaunchOptions

PARAMS = SamplingParams(temperature=0.7, max_tokens=6)


def llama_server_command(model_path: Path | str, *, logprobs: bool = False) -> list[str]:
    """llama.cpp's server; computing logits for every prompt token (needed for logprobs)
    is slow on two cores, so it is only asked for where a test reads logprobs."""
    return [
        "{python}", "-m", "llama_cpp.server",
        "--model", str(model_path),
        "--host", "{host}", "--port", "{port}",
        "--n_ctx", "512", "--chat_format", "gemma",
        "--logits_all", str(logprobs).lower(),
    ]  # fmt: skip


def launching_teacher(tmp_path: Path, command: list[str], **options) -> OpenAITeacher:
    return OpenAITeacher(
        OpenAIOptions(
            model="gemma",
            mode="chat",
            concurrency=4,
            max_retries=0,
            launch=LaunchOptions(command=command, startup_timeout=120),
            **options,
        ),
        TeacherContext(log_dir=tmp_path / "run"),
    )


def ask(teacher: OpenAITeacher, questions: list[str]) -> list[str]:
    requests = [
        Request(id=f"q{i}", params=PARAMS, messages=({"role": "user", "content": q},))
        for i, q in enumerate(questions)
    ]

    async def run():
        try:
            return await Dispatcher(teacher, None, config_seed=1).resolve(requests)
        finally:
            await teacher.aclose()

    return [completion.text for [completion] in asyncio.run(run())]


def server_pid(log: Path) -> int:
    match = re.search(r"# distillpipe: server pid (\d+)", log.read_text(errors="replace"))
    assert match, log.read_text(errors="replace")
    return int(match.group(1))


def gone(pid: int, within: float = 30.0) -> bool:
    """True once ``pid`` has exited (a zombie is dead: only its reaping is left to its parent,
    which after distillpipe exits is the container's init)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.2)
    return False


def launch_config(gguf_path: Path, *, logprobs: bool = False, **generate: object) -> dict:
    return {
        "name": "served",
        "seed": 5,
        "teacher": {
            "backend": "openai",
            "model": "gemma",
            "mode": "chat",
            "concurrency": 8,
            "launch": {
                "command": llama_server_command(gguf_path, logprobs=logprobs),
                "startup_timeout": 120,
                "stop_timeout": 5,  # uvicorn would finish the request in flight first
            },
        },
        "generate": {"n": 1, "max_tokens": 6, **generate},
    }


@pytest.mark.slow
def test_run_starts_the_server_generates_through_it_keeps_top_logprobs_and_stops_it(
    tmp_path: Path, gguf_path: Path, cli_env: dict[str, str]
):
    config = launch_config(gguf_path, logprobs=True, top_logprobs=3)
    config["run_dir"] = str(tmp_path / "runs")
    config["input"] = "in.jsonl"
    write_config(tmp_path / "config.yaml", config)
    write_jsonl(tmp_path / "in.jsonl", [
        {"id": "a", "instruction": "Name a colour."},
        {"id": "b", "instruction": "Name a fruit."},
    ])  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "distillpipe", "run", str(tmp_path / "config.yaml"), "-q"],
        env=cli_env,
        capture_output=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr.decode()
    run_dir = tmp_path / "runs" / "served"
    records = list(read_records(run_dir / "generate.jsonl"))
    assert [r["id"] for r in records] == ["a", "b"]
    for record in records:
        [response] = record["responses"]
        assert response["text"].strip()
        rows = response["logprobs"]
        assert len(rows) == response["usage"]["completion_tokens"]
        for token, logprob, top in rows:
            assert isinstance(token, str) and logprob <= 0.0
            assert len(top) == 3
            assert max(top.values()) >= logprob
    log = run_dir / "server.log"
    assert "POST /v1/chat/completions" in log.read_text(errors="replace")
    assert gone(server_pid(log), within=5.0), "the server outlived distillpipe"

    rerun = subprocess.run(
        [sys.executable, "-m", "distillpipe", "run", str(tmp_path / "config.yaml"), "-q",
         "--from", "generate"],
        env=cli_env, capture_output=True, timeout=300,
    )  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr.decode()
    assert log.read_text(errors="replace").count("# distillpipe: starting") == 1, (
        "a fully cached rerun started a server"
    )
    assert list(read_records(run_dir / "generate.jsonl")) == records


def test_a_server_already_answering_at_base_url_is_reused_not_started(
    tmp_path: Path, llama_server: str
):
    never_runs = ["{python}", "-c", "raise SystemExit('must not be started')"]
    teacher = launching_teacher(tmp_path, never_runs, base_url=llama_server)
    server = teacher.managed_server()
    [answer] = ask(teacher, ["Name a colour."])
    assert answer.strip()
    assert server.reused and server.pid is None
    assert not (tmp_path / "run" / "server.log").exists()


def test_a_server_not_running_yet_is_known_by_its_launch_recipe_and_starts_for_none(
    tmp_path: Path, gguf_path: Path, llama_server: str
):
    renamed = tmp_path / "renamed.gguf"
    try:
        os.link(gguf_path, renamed)
    except OSError:
        shutil.copyfile(gguf_path, renamed)
    recipe = launching_teacher(tmp_path, llama_server_command(gguf_path)).identity
    assert {"file": file_fingerprint(gguf_path)} in recipe["launch"]
    assert {"{python}", "{host}", "{port}"} <= set(map(str, recipe["launch"]))
    assert "endpoint" not in recipe  # a free port each time
    assert launching_teacher(tmp_path, llama_server_command(renamed)).identity == recipe
    assert not (tmp_path / "run" / "server.log").exists(), "a server was started"

    reused = launching_teacher(tmp_path, llama_server_command(gguf_path), base_url=llama_server)
    assert "launch" not in reused.identity  # the server answering there is what answers
    assert reused.identity["endpoint"] == llama_server
    assert reused.identity["serves"] == {"id": {"file": file_fingerprint(gguf_path)}}


def test_a_server_that_crashes_at_start_is_reported_with_its_log_tail(tmp_path: Path):
    teacher = launching_teacher(tmp_path, llama_server_command(tmp_path / "missing.gguf"))
    with pytest.raises(ServerError) as error:
        ask(teacher, ["Name a colour."])
    message = str(error.value)
    assert "exited with code 1 while starting" in message
    assert "Model path does not exist" in message  # the server's own last words
    assert str(tmp_path / "run" / "server.log") in message


def test_a_port_taken_by_something_that_is_no_server_is_an_error_naming_it(tmp_path: Path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        teacher = launching_teacher(
            tmp_path, ["{python}", "-c", "pass"], base_url=f"http://127.0.0.1:{port}/v1"
        )
        with pytest.raises(ServerError, match=rf"port {port} on 127.0.0.1 is taken"):
            ask(teacher, ["Name a colour."])
    assert teacher.managed_server().pid is None


@pytest.mark.slow
def test_a_server_that_dies_during_the_run_is_reported_and_reaped(tmp_path: Path, gguf_path: Path):
    teacher = launching_teacher(tmp_path, llama_server_command(gguf_path))
    server = teacher.managed_server()
    pids: list[int] = []

    async def run():
        try:
            await server.start()
            pids.append(server.pid)
            os.kill(server.pid, signal.SIGKILL)
            requests = [Request(id="late", params=PARAMS, prompt="Hello", n=1)]
            return await Dispatcher(teacher, None).resolve(requests)
        finally:
            await teacher.aclose()

    with pytest.raises(ServerError, match=r"exited with code -9 during the run") as error:
        asyncio.run(run())
    assert "Uvicorn running on" in str(error.value) or "llama" in str(error.value).lower()
    assert server.process is None
    assert not psutil.pid_exists(pids[0])  # reaped, not left a zombie


def start_cli_run(tmp_path: Path, gguf_path: Path, env: dict[str, str]) -> subprocess.Popen:
    """A ``distillpipe run`` busy long enough to be interrupted mid-generation."""
    config = launch_config(gguf_path, max_tokens=64)
    config["run_dir"] = str(tmp_path / "runs")
    config["input"] = "in.jsonl"
    write_config(tmp_path / "config.yaml", config)
    write_jsonl(
        tmp_path / "in.jsonl",
        [{"id": f"r{i}", "instruction": f"Write a story about the number {i}."} for i in range(64)],
    )
    with (tmp_path / "stderr.txt").open("wb") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "distillpipe", "run", str(tmp_path / "config.yaml"), "-q"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )


def wait_for_generation(log: Path, cli: subprocess.Popen, timeout: float = 120) -> int:
    """The server's pid, once distillpipe found it ready and began sending requests."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert cli.poll() is None, (log.parents[2] / "stderr.txt").read_text()
        if log.exists() and "answered after" in log.read_text(errors="replace"):
            time.sleep(1.0)  # requests are in flight now
            return server_pid(log)
        time.sleep(0.2)
    raise TimeoutError(f"the server was not ready within {timeout}s")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signal_sent", "exit_code"),
    [(signal.SIGINT, 130), (signal.SIGKILL, -9)],
    ids=["ctrl-c", "distillpipe-killed"],
)
def test_no_server_outlives_an_interrupted_or_killed_run(
    tmp_path: Path, gguf_path: Path, cli_env: dict[str, str], signal_sent: int, exit_code: int
):
    cli = start_cli_run(tmp_path, gguf_path, cli_env)
    try:
        pid = wait_for_generation(tmp_path / "runs" / "served" / "server.log", cli)
        cli.send_signal(signal_sent)
        assert cli.wait(timeout=60) == exit_code
        assert gone(pid), f"server pid {pid} is still running"
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()


def test_a_launched_server_needs_a_base_url_on_this_machine(tmp_path: Path):
    teacher = launching_teacher(
        tmp_path, ["{python}", "-c", "pass"], base_url="https://api.openai.com/v1"
    )
    with pytest.raises(ServerError, match=r"base_url https://api\.openai\.com/v1 is not on"):
        ask(teacher, ["Name a colour."])


def test_an_unknown_placeholder_in_the_command_is_a_config_error_naming_the_line(tmp_path: Path):
    config = tmp_path / "c.yaml"
    config.write_text(
        "teacher:\n  backend: openai\n  model: m\n  launch:\n"
        "    command: [vllm, serve, '{modle}']\n"
    )
    with pytest.raises(ConfigError, match=r"c\.yaml:5: teacher\.launch\.command: .*\{modle\}"):
        load_config(config)
