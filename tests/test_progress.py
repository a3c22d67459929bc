"""Progress: counts of calls and records, a rate and an ETA from teacher calls, lines that move."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from support import small_llamacpp_config, write_config

from distillpipe import progress as progress_module
from distillpipe.io import write_jsonl
from distillpipe.progress import StageProgress


def test_a_teacher_stage_counts_calls_and_records_and_times_its_teacher_calls():
    progress = StageProgress("quiet", "generate", 16, calls=32)
    for _ in range(4):
        progress.call_done(cached=True)
    for _ in range(8):
        progress.call_done()
    progress.advance(3)
    assert progress.status(4.0) == "12/32 calls, 3/16 records, 2.0 calls/s, ETA 0:00:10"


def test_a_cache_replay_counts_as_done_but_promises_no_eta():
    progress = StageProgress("quiet", "generate", 16, calls=32)
    for _ in range(16):
        progress.call_done(cached=True)
    progress.advance(8)
    assert progress.status(0.5) == "16/32 calls, 8/16 records, 0.0 calls/s"
    progress.call_done()
    assert progress.status(2.0) == "17/32 calls, 8/16 records, 0.5 calls/s, ETA 0:00:30"


def test_a_stage_without_teacher_calls_counts_records():
    progress = StageProgress("quiet", "filter", 100)
    progress.advance(50)
    assert progress.status(10.0) == "50/100 records, 5.0 records/s, ETA 0:00:10"
    assert StageProgress("quiet", "filter").status(1.0) == "0 records, 0.0 records/s"


def test_unknown_call_totals_show_counts_and_no_eta():
    seed = StageProgress("quiet", "seed", 10)
    for _ in range(3):
        seed.call_done()
    seed.advance(2)
    assert seed.status(10.0) == "3 calls, 2/10 records, 0.3 calls/s"
    assert seed.status(120.0) == "3 calls, 2/10 records, 0.025 calls/s"
    on_ray = StageProgress("quiet", "generate on ray", calls=2_000)
    for _ in range(1_500):
        on_ray.call_done()
    assert on_ray.status(1.0) == "1,500/2,000 calls, 1,500.0 calls/s, ETA 0:00:00"


def test_a_finished_count_has_no_eta():
    progress = StageProgress("quiet", "generate", 1, calls=2)
    progress.call_done()
    progress.call_done()
    progress.advance()
    assert progress.status(1.0) == "2/2 calls, 1/1 records, 2.0 calls/s"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def perf_counter(self) -> float:
        return self.now


def test_plain_lines_start_within_a_second_then_come_every_few_seconds(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    clock = Clock()
    monkeypatch.setattr(progress_module, "time", clock)
    progress = StageProgress("plain", "generate", 2, calls=4, extra=lambda: "7 tok")
    clock.now += 0.5
    progress.call_done()
    assert capsys.readouterr().err == ""
    clock.now += 0.5
    progress.call_done()
    assert (
        capsys.readouterr().err
        == "[generate] 2/4 calls, 0/2 records, 2.0 calls/s, ETA 0:00:01, 7 tok\n"
    )
    clock.now += StageProgress.PLAIN_EVERY_SECONDS - 0.1
    progress.call_done()
    assert capsys.readouterr().err == ""
    clock.now += 0.2
    progress.advance()
    assert capsys.readouterr().err.startswith("[generate] 3/4 calls, 1/2 records")
    progress.call_done()
    progress.advance()
    progress.close()
    assert capsys.readouterr().err.startswith("[generate] 4/4 calls, 2/2 records")


def test_a_finished_stage_below_an_upper_bound_has_no_eta():
    progress = StageProgress("quiet", "evolve", 4, calls=12)
    for _ in range(8):
        progress.call_done()
    progress.advance(4)
    progress.close()
    assert progress.status(4.0) == "8/12 calls, 4/4 records, 2.0 calls/s"


def test_quiet_and_unfinished_plain_stages_print_nothing(capsys: pytest.CaptureFixture[str]):
    quiet = StageProgress("quiet", "generate", 1, calls=1)
    quiet.call_done()
    quiet.close()
    failed = StageProgress("plain", "generate", 1, calls=1)
    failed.close(finished=False)
    assert capsys.readouterr().err == ""


PROGRESS_LINE = re.compile(
    r"\[generate\] (?P<calls>\d+)/(?P<calls_total>\d+) calls, "
    r"(?P<records>\d+)/(?P<records_total>\d+) records, (?P<rate>[\d.]+) calls/s"
)


def test_a_real_generate_run_shows_calls_completing_before_the_stage_ends(
    tmp_path: Path, cli_env: dict[str, str]
):
    """One dispatch batch holds every record, so only completed calls can move the line."""
    config = write_config(tmp_path / "config.yaml", small_llamacpp_config(n=2, max_tokens=8))
    write_jsonl(tmp_path / "in.jsonl", [{"instruction": f"Name colour {i}."} for i in range(3)])
    output = tmp_path / "out.jsonl"
    seen = []  # (the line's numbers, still running and not yet written when it arrived)
    with subprocess.Popen(
        [sys.executable, "-m", "distillpipe", "generate", "-c", str(config),
         "-i", str(tmp_path / "in.jsonl"), "-o", str(output)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=cli_env,
    ) as process:  # fmt: skip
        watchdog = threading.Timer(600, process.kill)
        watchdog.start()
        try:
            assert process.stderr is not None
            for line in process.stderr:
                if match := PROGRESS_LINE.match(line.decode()):
                    numbers = {k: float(v) for k, v in match.groupdict().items()}
                    seen.append((numbers, process.poll() is None and not output.exists()))
        finally:
            watchdog.cancel()
    assert process.returncode == 0
    assert seen, "no progress line"
    first, in_flight = seen[0]
    assert 0 < first["calls"] < first["calls_total"] == 6 and first["records_total"] == 3
    assert first["rate"] > 0
    assert in_flight, "the first line came only once the stage was over"
    last, _ = seen[-1]
    assert (last["calls"], last["records"]) == (6, 3)
