"""The bubblewrap runner, attacked for real: each attack is stopped, and afterwards the
machine is checked — no process left, no file written outside, no connection made."""

from __future__ import annotations

import os
import socket
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from support import processes_with

from distillpipe.sandbox.base import Limits, Outcome, Program
from distillpipe.sandbox.bubblewrap import BubblewrapRunner
from distillpipe.sandbox.languages import BUILTIN

RUNNER = BubblewrapRunner()
pytestmark = pytest.mark.skipif(
    RUNNER.problem() is not None, reason=f"bubblewrap cannot run here: {RUNNER.problem()}"
)
FAST = Limits(wall_s=3, cpu_s=2, memory_mb=256, processes=16, output_bytes=64 * 1024)


@pytest.fixture
def marker() -> str:
    """A tag in every test program's command line, to find its processes afterwards."""
    tag = f"dp-sandbox-test-{uuid.uuid4().hex[:12]}"
    yield tag
    assert processes_with(tag) == [], "a sandboxed process outlived its run"


def python(code: str, marker: str, stdin: str = "") -> Program:
    argv = (*BUILTIN["python"].argv("{dir}", 256), marker)
    return Program(argv, (("main.py", textwrap.dedent(code)),), stdin)


def run(code: str, marker: str, limits: Limits = FAST, stdin: str = "") -> Outcome:
    return RUNNER.run(python(code, marker, stdin), limits, slot=0)


def test_a_program_reads_its_stdin_in_a_fresh_directory_with_a_clean_environment(
    marker: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-must-not-leak")
    outcome = run(
        """
        import os
        print(input(), os.getcwd(), sorted(os.listdir(".")))
        print("OPENAI_API_KEY" in os.environ, os.environ["HOME"])
        """,
        marker,
        stdin="hello\n",
    )
    assert outcome.status == "exited" and outcome.exit_code == 0, outcome.stderr
    assert outcome.stdout.splitlines() == ["hello /tmp ['main.py']", "False /tmp"]


def test_its_directory_takes_writes_up_to_disk_mb_and_they_vanish_with_it(marker: str) -> None:
    outcome = run(
        """
        open("notes.txt", "w").write("scratch")
        try:
            open("main.py", "a").write("# edited")
        except OSError as exc:
            print("main.py:", exc.strerror)
        try:
            with open("big.bin", "wb") as big:
                for _ in range(4):
                    big.write(bytes(1024 * 1024))
        except OSError as exc:
            print("big.bin:", exc.strerror)
        print(open("notes.txt").read())
        """,
        marker,
        Limits(wall_s=3, disk_mb=2),
    )
    assert outcome.exit_code == 0, outcome.stderr
    assert outcome.stdout.splitlines() == [
        "main.py: Read-only file system",
        "big.bin: No space left on device",
        "scratch",
    ]


def test_nothing_outside_its_directory_is_writable_and_homes_are_hidden(
    marker: str, tmp_path: Path
) -> None:
    (tmp_path / "secret.txt").write_text("host secret")
    targets = [
        tmp_path / "escaped.txt",
        Path("/var/tmp") / f"{marker}.txt",
        Path.home() / f"{marker}.txt",
        Path("/etc") / f"{marker}.txt",
        Path(os.getcwd()) / f"{marker}.txt",
    ]
    outcome = run(
        f"""
        import os
        for path in {[str(t) for t in targets]!r}:
            try:
                open(path, "w").write("pwned")
                print("WROTE", path)
            except OSError as exc:
                print("refused", type(exc).__name__)
        try:
            print(open({str(tmp_path / "secret.txt")!r}).read())
        except OSError as exc:
            print("unreadable", type(exc).__name__)
        print("home holds", sorted(os.listdir({str(Path.home())!r})))
        """,
        marker,
    )
    assert outcome.exit_code == 0, outcome.stderr
    assert "WROTE" not in outcome.stdout and "host secret" not in outcome.stdout
    assert outcome.stdout.count("refused") == len(targets)
    assert "unreadable FileNotFoundError" in outcome.stdout
    assert not [t for t in targets if t.exists()]
    home_listing = outcome.stdout.split("home holds")[1]
    assert ".bashrc" not in home_listing and ".cache" not in home_listing


def test_no_connection_leaves_the_sandbox(marker: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        port = listener.getsockname()[1]
        outcome = run(
            f"""
            import socket
            for host in ("127.0.0.1", "1.1.1.1"):
                try:
                    socket.create_connection((host, {port}), timeout=1).close()
                    print("CONNECTED", host)
                except OSError as exc:
                    print("blocked", host, exc)
            """,
            marker,
        )
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody knocked
    assert outcome.exit_code == 0, outcome.stderr
    assert "CONNECTED" not in outcome.stdout
    assert "blocked 127.0.0.1" in outcome.stdout and "blocked 1.1.1.1" in outcome.stdout


def test_an_infinite_loop_is_killed_at_the_wall_clock(marker: str) -> None:
    limits = Limits(wall_s=1.5, cpu_s=30)
    started = time.monotonic()
    outcome = run("while True:\n    pass\n", marker, limits)
    assert outcome.status == "timeout" and outcome.signal == 9
    assert time.monotonic() - started < limits.wall_s + 3


def test_cpu_time_is_capped_apart_from_the_wall_clock(marker: str) -> None:
    outcome = run("while True:\n    pass\n", marker, Limits(wall_s=120, cpu_s=1))
    assert outcome.status == "cpu_limit", outcome
    assert outcome.wall_s < 120


def test_a_memory_hog_gets_a_memory_error(marker: str) -> None:
    outcome = run(
        """
        chunks = []
        while True:
            chunks.append(bytearray(32 * 1024 * 1024))
        """,
        marker,
    )
    assert outcome.status == "exited" and outcome.exit_code == 1
    assert outcome.stderr.strip().endswith("MemoryError")


def test_processes_are_capped_and_a_fork_bomb_is_stopped(marker: str) -> None:
    counted = run(
        """
        import os, time
        children = 0
        for _ in range(200):
            try:
                pid = os.fork()
            except OSError:
                break
            if pid == 0:
                time.sleep(30)
                os._exit(0)
            children += 1
        print(children)
        """,
        marker,
    )
    assert counted.exit_code == 0, counted.stderr
    assert int(counted.stdout) < FAST.processes  # the cap, not the 200 asked for
    started = time.monotonic()
    bomb = run(
        """
        import os, time
        while True:
            try:
                os.fork()
            except OSError:
                time.sleep(0.01)
        """,
        marker,
    )
    assert bomb.status == "timeout"
    assert time.monotonic() - started < FAST.wall_s + 5


def test_output_beyond_the_cap_stops_the_program(marker: str) -> None:
    outcome = run("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n", marker)
    assert outcome.status == "output_limit"
    assert len(outcome.stdout) == FAST.output_bytes


def test_a_background_process_dies_with_its_run(marker: str) -> None:
    outcome = run(
        f"""
        import subprocess, sys
        subprocess.Popen(
            [sys.executable, "-S", "-c", "import time; time.sleep(60)", {marker!r}],
            start_new_session=True,
        )
        print("left a child behind")
        """,
        marker,
    )
    assert outcome.status == "exited" and outcome.wall_s < FAST.wall_s
    # the marker fixture checks that the child is gone


def test_a_crash_reports_its_signal(marker: str) -> None:
    outcome = run("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n", marker)
    assert (outcome.status, outcome.signal, outcome.exit_code) == ("signal", 11, None)
