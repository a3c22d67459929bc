"""The fallback runner (rlimits + process group): what it enforces, and that it says
what it does not (no network or filesystem isolation) so a run can report it."""

from __future__ import annotations

import os
import textwrap
import time
import uuid

import pytest
from support import processes_with

from distillpipe.sandbox.base import Limits, Program
from distillpipe.sandbox.languages import BUILTIN
from distillpipe.sandbox.rlimits import RlimitRunner, reachable_by_others

FAST = Limits(wall_s=2, cpu_s=2, memory_mb=256, processes=16, output_bytes=64 * 1024)


@pytest.fixture
def marker() -> str:
    tag = f"dp-rlimits-test-{uuid.uuid4().hex[:12]}"
    yield tag
    assert processes_with(tag) == [], "a process outlived its run"


def python(code: str, marker: str) -> Program:
    argv = (*BUILTIN["python"].argv("{dir}", 256), marker)
    return Program(argv, (("main.py", textwrap.dedent(code)),))


def test_it_reports_itself_as_weaker_isolation() -> None:
    isolation = RlimitRunner().isolation()
    assert isolation.level == "rlimits"
    assert isolation.to_json()["weaker"] is True
    assert "network: not isolated" in isolation.missing
    assert any(item.startswith("filesystem:") for item in isolation.missing)


def test_a_timeout_kills_the_program_and_the_children_in_its_group(marker: str) -> None:
    code = f"""
        import subprocess, sys
        subprocess.Popen([sys.executable, "-S", "-c", "import time; time.sleep(60)", {marker!r}])
        while True:
            pass
        """
    started = time.monotonic()
    outcome = RlimitRunner().run(python(code, marker), FAST)
    assert outcome.status in ("timeout", "cpu_limit")
    assert time.monotonic() - started < FAST.wall_s + 3


def test_memory_and_output_are_capped(marker: str) -> None:
    runner = RlimitRunner()
    hog = runner.run(python("x = bytearray(4 * 1024**3)\n", marker), FAST)
    assert hog.exit_code == 1 and hog.stderr.strip().endswith("MemoryError")
    chatty = runner.run(python("while True:\n    print('x' * 4096)\n", marker), FAST)
    assert chatty.status == "output_limit" and len(chatty.stdout) == FAST.output_bytes


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping to a slot uid needs root")
@pytest.mark.skipif(not reachable_by_others("/usr/bin/bash"), reason="needs a bash any uid runs")
def test_as_root_each_slot_is_its_own_uid_so_a_fork_bomb_is_capped_and_swept(
    marker: str,
) -> None:
    runner = RlimitRunner(drop_uid=True)
    assert "process count (RLIMIT_NPROC)" in runner.isolation().enforced
    # forks until the cap, each child detaching from the group: the uid sweep gets them
    bomb = Program(
        ("bash", "{dir}/main.sh", marker),
        (("main.sh", "n=0\nwhile [ $n -lt 200 ]; do setsid sleep 30 & n=$((n+1)); done\nwait\n"),),
    )
    started = time.monotonic()
    outcome = runner.run(bomb, FAST, slot=3)
    assert outcome.status == "timeout"
    assert "fork: retry" in outcome.stderr or "Resource temporarily unavailable" in outcome.stderr
    assert processes_of_slot(runner, 3) == []
    assert time.monotonic() - started < FAST.wall_s + 5


def processes_of_slot(runner: RlimitRunner, slot: int) -> list[int]:
    from distillpipe.sandbox.rlimits import processes_of

    uid = runner.slot_uid(slot)
    assert uid is not None
    return processes_of(uid)
