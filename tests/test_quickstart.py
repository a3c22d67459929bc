"""The shipped main job, `distillpipe run configs/quickstart.yaml`, end to end as CI runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(1800)  # about 2 minutes alone on two cores; far longer on a loaded machine
def test_the_quickstart_config_runs_every_stage_and_renders_its_report(
    tmp_path: Path, cli_env: dict[str, str]
):
    run = [sys.executable, "-m", "distillpipe", "run", str(ROOT / "configs" / "quickstart.yaml"),
           "--run-dir", str(tmp_path), "-q"]  # fmt: skip
    done = subprocess.run(run, capture_output=True, text=True, env=cli_env, timeout=1700)
    assert done.returncode == 0, done.stderr
    run_dir = tmp_path
    manifest = orjson.loads((run_dir / "manifest.json").read_bytes())
    assert list(manifest["stages"]) == ["seed", "evolve", "generate", "filter", "export"]
    assert all(stage["status"] == "done" for stage in manifest["stages"].values())
    train = (run_dir / "export" / "train.jsonl").read_bytes()
    rows = [orjson.loads(line) for line in train.splitlines()]
    assert rows, "the export holds no training rows"
    assert all(row["messages"][-1]["role"] == "assistant" for row in rows)

    report = subprocess.run(
        [sys.executable, "-m", "distillpipe", "report", str(run_dir)],
        capture_output=True, text=True, env=cli_env, timeout=300,
    )  # fmt: skip
    assert report.returncode == 0, report.stderr
    assert (run_dir / "report.html").stat().st_size > 0

    again = subprocess.run(run, capture_output=True, text=True, env=cli_env, timeout=300)
    assert again.returncode == 0, again.stderr
    rerun = orjson.loads((run_dir / "manifest.json").read_bytes())
    assert rerun["stages"] == manifest["stages"], "a rerun of a finished run redid a stage"
