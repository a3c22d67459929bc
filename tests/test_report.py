"""The run report: one self-contained HTML page built from a run directory's manifest and
stage files, whatever stages and filters the run had. Every section is checked against a
real run on the embedded gemma, read back from its manifest and stage files."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from markupsafe import escape
from support import write_config

from distillpipe.errors import InputError
from distillpipe.io import read_records, write_jsonl
from distillpipe.report import render, write_report

SEEDS = [
    {"instruction": "Give three tips for staying healthy."},
    {"instruction": "Translate the sentence into French.", "input": "Good morning."},
    {"instruction": "Write a haiku about autumn leaves."},
]
PRICE = {"input": 100.0, "output": 400.0}  # USD per million tokens, so a tiny run costs cents


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``distillpipe run`` on the embedded gemma through seed, evolve, generate, filter and
    export, kept tiny: two Self-Instruct requests, one Evol-Instruct round over the new
    instructions, one short response each. The gemma is priced by a ``cost.prices``
    override, so the teacher stages cost something."""
    root = tmp_path_factory.mktemp("report-run")
    write_jsonl(root / "seeds.jsonl", SEEDS)
    config = write_config(root / "config.yaml", {
        "name": "real", "seed": 7, "run_dir": str(root), "input": "seeds.jsonl",
        "teacher": {"backend": "llamacpp", "mode": "completion", "n_ctx": 512, "n_threads": 1},
        "self_instruct": {"target": 2, "requests_per_round": 2, "max_rounds": 1,
                          "max_tokens": 48, "seed_tasks_per_prompt": 3, "include_seeds": False},
        "evolve": {"rounds": 1, "max_tokens": 40,
                   "elimination": {"equality": "similarity", "answer_check": False}},
        "generate": {"n": 1, "max_tokens": 8},
        "filter": [{"type": "length", "reject_truncated": False, "response": {"min_words": 3}},
                   {"type": "perplexity", "max": "p90", "n_ctx": 512, "n_threads": 1}],
        "export": {},
        "cost": {"prices": {"gemma-3-270m": PRICE}},
    })  # fmt: skip
    env = {**os.environ, "DISTILLPIPE_CACHE_DIR": str(root / "cache")}
    done = subprocess.run([sys.executable, "-m", "distillpipe", "run", str(config), "-q"],
                          capture_output=True, env=env, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    run = root / "real"
    # What the assertions below need from the teacher's real output:
    assert any(r["origin"].get("operator") for r in read_records(run / "evolve.jsonl"))
    assert sum(1 for _ in read_records(run / "filter.rejected.jsonl")) >= 1
    return run


def manifest_of(run: Path) -> dict:
    return orjson.loads((run / "manifest.json").read_bytes())


def lines(path: Path) -> list[dict]:
    return list(read_records(path)) if path.is_file() else []


def plot_ids(html: str) -> list[str]:
    return re.findall(r'<figure class="plot" id="plot-([^"]+)"', html)


def test_every_stage_and_filter_of_the_run_gets_its_plot(real_run: Path):
    html = render(real_run)
    assert plot_ids(html) == [
        "funnel", "instruction-lengths", "response-lengths", "scores-length", "scores-perplexity",
        "evol-depth", "evol-operators", "tokens",
    ]  # fmt: skip
    assert html.count("<svg") == 8


def test_the_header_names_the_teacher_and_the_stages_in_the_order_they_ran(real_run: Path):
    html = render(real_run)
    teacher = manifest_of(real_run)["config"]["teacher"]
    assert f"Teacher: <b>{teacher['model']}</b> (backend <code>llamacpp</code>)" in html
    assert "Stages: seed → evolve → generate → filter → export." in html
    funnel = html[html.index('id="plot-funnel"') : html.index('id="plot-instruction-lengths"')]
    labels = ["input", "seed", "evolve", "generate", "filter · length", "filter · perplexity",
              "filter", "export"]  # fmt: skip
    positions = [funnel.index(f">{label}<") for label in labels]
    assert positions == sorted(positions)


def test_filter_sections_show_counts_thresholds_and_examples_with_reasons(real_run: Path):
    html = render(real_run)
    kept, rejected = lines(real_run / "filter.jsonl"), lines(real_run / "filter.rejected.jsonl")
    by_perplexity = [r for r in rejected if r["reject"]["filter"] == "perplexity"]
    by_length = len(rejected) - len(by_perplexity)
    length = html[html.index('id="filter-length"') : html.index('id="filter-perplexity"')]
    assert (f"{len(kept)} scored records kept, {by_length} rejected,\n"
            f"{len(by_perplexity)} rejected by another filter") in length  # fmt: skip
    perplexity = html[html.index('id="filter-perplexity"') : html.index("<h2>Config</h2>")]
    assert f"{len(kept)} scored records kept, {len(by_perplexity)} rejected" in perplexity
    p90 = manifest_of(real_run)["stages"]["filter"]["stats"]["filters"]["perplexity"]["quantiles"]
    assert f"<code>max (p90) = {float(p90['p90'])}</code>" in perplexity
    assert str(escape(kept[0]["instruction"][:400])) in perplexity  # a kept example
    assert str(escape(by_perplexity[0]["reject"]["reason"])) in perplexity
    for name in ("evolve", "seed"):  # rejections outside the filter stage have sections too
        for record in lines(real_run / f"{name}.rejected.jsonl")[:1]:
            section = html[html.index(f'id="filter-{record["reject"]["filter"]}"') :]
            assert str(escape(record["reject"]["reason"])) in section


def test_tokens_cost_and_throughput_per_stage_come_from_the_manifest(real_run: Path):
    html = render(real_run)
    for name, entry in manifest_of(real_run)["stages"].items():
        row = re.search(rf"<tr><td>{name}</td>(.*?)</tr>", html, re.S).group(1)
        cells = re.findall(r"<td>([^<]*)</td>", row)
        teacher, seconds = entry["stats"].get("teacher"), entry["seconds"]
        rejected = sum((entry["stats"].get("rejected") or {}).values())
        expected = [str(entry["records_in"]), str(entry["records_out"]), str(rejected),
                    f"{seconds:.1f}"]  # fmt: skip
        if teacher is None:  # filter (perplexity scores locally) and export ask no teacher
            expected += ["0", "0", "0", "0", "—", f"{entry['records_out'] / seconds:.1f}", "—"]
        else:
            prompt, completion = teacher["prompt_tokens"], teacher["completion_tokens"]
            cost = (prompt * PRICE["input"] + completion * PRICE["output"]) / 1e6
            assert teacher["cost_usd"] == pytest.approx(cost) and cost > 0
            expected += [
                str(teacher["teacher_calls"]), str(teacher["cache_hits"]), f"{prompt:,}",
                f"{completion:,}", f"{completion / teacher['teacher_seconds']:.1f}",
                f"{entry['records_out'] / seconds:.1f}", f"{teacher['cost_usd']:.4f}",
            ]  # fmt: skip
        assert cells == expected, name
    assert [n for n, e in manifest_of(real_run)["stages"].items() if "teacher" in e["stats"]] == [
        "seed",
        "evolve",
        "generate",
    ]


def test_the_config_section_is_the_run_s_resolved_config(real_run: Path):
    html = render(real_run)
    config = manifest_of(real_run)["config"]
    assert config["cost"]["prices"]["gemma-3-270m"]["output"] == PRICE["output"]
    shown = str(escape(orjson.dumps(config, option=orjson.OPT_INDENT_2).decode()))
    assert f"<pre>{shown}</pre>" in html


def test_the_page_is_self_contained_and_deterministic(real_run: Path, tmp_path: Path):
    first = write_report(real_run).read_bytes()
    second = write_report(real_run, tmp_path / "again.html").read_bytes()
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
def test_the_report_of_a_real_run_renders_in_headless_chromium(
    real_run: Path, tmp_path: Path, cli_env: dict
):
    made = subprocess.run(
        [sys.executable, "-m", "distillpipe", "report", str(real_run),
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


def test_trace_lengths_are_plotted_beside_the_answer_lengths(tmp_path: Path):
    responses = [
        {"text": "5", "reasoning": "two and three " * 4, "reasoning_kind": "raw", "sample": 0,
         "usage": {"completion_tokens": 14, "reasoning_tokens": 12}},
        {"text": "no trace here", "reasoning": None, "sample": 1, "usage": {}},
    ]  # fmt: skip
    write_jsonl(
        tmp_path / "generate.jsonl", [{"id": "a", "instruction": "Add.", "responses": responses}]
    )
    manifest = {"config": {}, "stages": {"generate": {"output": "generate.jsonl", "stats": {}}}}
    (tmp_path / "manifest.json").write_bytes(orjson.dumps(manifest))
    html = render(tmp_path)
    assert "trace-lengths" in plot_ids(html)
    assert "Trace and answer lengths of the traced responses (generate)" in html
