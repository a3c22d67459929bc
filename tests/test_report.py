"""The run report: one self-contained HTML page built from a run directory's manifest and
stage files, whatever stages and filters the run had."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from support import small_llamacpp_config, write_config

from distillpipe.config import load_config
from distillpipe.errors import InputError
from distillpipe.io import write_jsonl
from distillpipe.report import render, write_report
from distillpipe.runner import run_pipeline


def record(i: int, **extra: object) -> dict:
    words = " ".join(["word"] * (3 + i))
    return {
        "id": f"r{i}", "instruction": f"Question {i}: {words}?",
        "origin": {"stage": "evolve", "parent_id": f"s{i}",
                   "operator": ["deepen", "concretise"][i % 2], "round": i % 3},
        "responses": [{"text": f"Answer {i}", "model": "teacher-x", "finish_reason": "stop",
                       "usage": {"prompt_tokens": 20, "completion_tokens": 5 + i}, "sample": 0}],
        **extra,
    }  # fmt: skip


def stage_entry(
    records_in: int, records_out: int, stats: dict, output: str, started_at: float
) -> dict:
    return {"status": "done", "records_in": records_in, "records_out": records_out,
            "seconds": 2.0, "output": output, "stats": stats, "started_at": started_at}  # fmt: skip


@pytest.fixture
def contract_run(tmp_path: Path) -> Path:
    """A run directory shaped like the record contract: evolve lineage, filter scores,
    a selection, rejected records with reasons, and a stage this module has never heard of."""
    run = tmp_path / "run"
    run.mkdir()
    evolved = [record(i) for i in range(10)]
    scored = [record(i, scores={"length": 3 + i, "reward": 0.1 * i}) for i in range(10)]
    kept, too_short = scored[2:], scored[:2]
    write_jsonl(run / "evolve.jsonl", evolved)
    write_jsonl(run / "generate.jsonl", evolved)
    write_jsonl(run / "filter.jsonl", kept)
    write_jsonl(run / "filter.rejected.jsonl", [
        {**r, "reject": {"filter": "length", "reason": "fewer than 5 words",
                         "score": r["scores"]["length"]}}
        for r in too_short
    ])  # fmt: skip
    write_jsonl(run / "decontaminate.jsonl", kept[:-1])
    write_jsonl(run / "decontaminate.rejected.jsonl", [
        {**kept[-1], "reject": {"filter": "ngram-overlap", "reason": "13-gram match in gsm8k",
                                "score": 0.8}}
    ])  # fmt: skip
    teacher = {"teacher_calls": 10, "cache_hits": 2, "prompt_tokens": 200, "completion_tokens": 95,
               "teacher_seconds": 5.0, "cost": 0.0123}  # fmt: skip
    manifest = {
        "name": "contract",
        "config": {"teacher": {"backend": "openai", "model": "teacher-x"},
                   "filter": [{"type": "length", "min_words": 5},
                              {"type": "reward", "threshold": 0.3}]},
        "stages": {
            "filter": stage_entry(10, 8, {"rejected": {"length": 2}, "filters": {
                "length": {"seen": 10, "kept": 8, "rejected": 2},
                "reward": {"seen": 8, "kept": 8, "rejected": 0}}}, "filter.jsonl", 3),
            "evolve": stage_entry(5, 10, {"teacher": teacher}, "evolve.jsonl", 1),
            "generate": stage_entry(10, 10, {"teacher": teacher}, "generate.jsonl", 2),
            "decontaminate": stage_entry(8, 7, {"rejected": {"ngram-overlap": 1}},
                                         "decontaminate.jsonl", 4),
        },
    }  # fmt: skip
    (run / "manifest.json").write_bytes(orjson.dumps(manifest))
    return run


def plot_ids(html: str) -> list[str]:
    return re.findall(r'<figure class="plot" id="plot-([^"]+)"', html)


def test_every_stage_and_filter_of_the_run_gets_its_plot(contract_run: Path):
    html = render(contract_run)
    assert plot_ids(html) == [
        "funnel", "instruction-lengths", "response-lengths", "scores-length", "scores-reward",
        "scores-ngram-overlap", "evol-depth", "evol-operators", "tokens",
    ]  # fmt: skip
    assert html.count("<svg") == 9


def test_stages_appear_in_the_order_they_ran(contract_run: Path):
    html = render(contract_run)
    assert "Stages: evolve → generate → filter → decontaminate." in html
    funnel = html[html.index('id="plot-funnel"') : html.index('id="plot-instruction-lengths"')]
    labels = ["input", "evolve", "generate", "filter · length", "filter · reward", "filter",
              "decontaminate"]  # fmt: skip
    positions = [funnel.index(f">{label}<") for label in labels]
    assert positions == sorted(positions)


def test_filter_sections_show_thresholds_and_examples_with_reasons(contract_run: Path):
    html = render(contract_run)
    length = html[html.index('id="filter-length"') : html.index('id="filter-reward"')]
    assert "8 scored records kept, 2 rejected" in length
    assert "<code>min_words = 5.0</code>" in length
    assert "fewer than 5 words" in length
    assert "min_words = 5" in html[html.index('id="plot-scores-length"') :]  # the line's label
    assert "13-gram match in gsm8k" in html
    reward = html[html.index('id="filter-reward"') : html.index('id="filter-ngram-overlap"')]
    assert "8 scored records kept, 0 rejected,\n2 rejected by another filter" in reward
    assert "threshold = 0.3" in html[html.index('id="plot-scores-reward"') :]


def test_tokens_cost_and_throughput_per_stage(contract_run: Path):
    html = render(contract_run)
    row = re.search(r"<tr><td>generate</td>(.*?)</tr>", html, re.S).group(1)
    cells = re.findall(r"<td>([^<]*)</td>", row)
    assert cells == ["10", "10", "0", "2.0", "10", "2", "200", "95", "19.0", "5.0", "0.0123"]


def test_the_page_is_self_contained_and_deterministic(contract_run: Path, tmp_path: Path):
    first = write_report(contract_run).read_bytes()
    second = write_report(contract_run, tmp_path / "again.html").read_bytes()
    assert first == second
    assert not re.search(rb"<link|<img|\ssrc=|url\((?!#)|@import|https?://(?!www\.w3\.org/)", first)


def test_a_directory_without_manifest_is_a_one_line_error(tmp_path: Path, cli_env: dict):
    with pytest.raises(InputError, match=r"no manifest\.json; is this a run directory"):
        render(tmp_path)
    result = subprocess.run([sys.executable, "-m", "distillpipe", "report", str(tmp_path)],
                            capture_output=True, env=cli_env, timeout=120)  # fmt: skip
    assert result.returncode == 1
    assert len(result.stderr.decode().strip().splitlines()) == 1


CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run")  # fmt: skip


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    binary = shutil.which("chromium")
    if binary is None:
        pytest.skip("chromium is not installed (make install-test installs it)")
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    return subprocess.run(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr",
         "--window-size=1280,2000", *args],
        capture_output=True, timeout=180,
    )  # fmt: skip


@pytest.mark.slow
def test_the_report_of_a_real_run_renders_in_headless_chromium(tmp_path: Path, cli_env: dict):
    data = {**small_llamacpp_config(n=2), "export": {"validation": 1}}
    config = load_config(write_config(tmp_path / "config.yaml", data))
    write_jsonl(tmp_path / "in.jsonl", [
        {"instruction": "Name a colour."}, {"instruction": "Name a fruit."},
        {"instruction": "Translate to French.", "input": "good night"},
    ])  # fmt: skip
    run_pipeline(config, tmp_path / "run", tmp_path / "in.jsonl")
    made = subprocess.run(
        [sys.executable, "-m", "distillpipe", "report", str(tmp_path / "run"),
         "-o", str(tmp_path / "report.html")],
        capture_output=True, env=cli_env, timeout=300,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr.decode()
    page = (tmp_path / "report.html").as_uri()

    dom = chromium(tmp_path, "--dump-dom", page)
    assert dom.returncode == 0, dom.stderr.decode()[-2000:]
    body = re.search(rb"<body[^>]*>", dom.stdout).group(0).decode()
    assert 'data-errors="0"' in body
    expected = int(re.search(r'data-plots="(\d+)"', body).group(1))
    assert expected >= 4
    assert f'data-plots-rendered="{expected}"' in body  # every plot laid out with a size
    for plot in ("funnel", "instruction-lengths", "response-lengths", "tokens"):
        assert f'id="plot-{plot}"'.encode() in dom.stdout
    assert b"Uncaught" not in dom.stderr

    shot = tmp_path / "report.png"
    taken = chromium(tmp_path, f"--screenshot={shot}", page)
    assert taken.returncode == 0, taken.stderr.decode()[-2000:]
    import matplotlib.image

    pixels = (matplotlib.image.imread(shot)[..., :3] * 255).round()
    bar_blue = (abs(pixels - (76, 114, 176)).sum(axis=-1) < 30).sum()
    assert bar_blue > 5000  # the plots' bars are on screen, not just the text
