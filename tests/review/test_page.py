"""The review page in a real browser (Playwright driving Debian's Chromium, no download).

A real run on the embedded gemma is reviewed with the keyboard alone — accept, reject
with a reason, edit, pick another sample — and rerunning it applies exactly those
decisions to the filter output and the export. A record full of markup shows it as
text and runs nothing. The screenshot lands in the test's folder, and also in
$DISTILLPIPE_TEST_ARTIFACTS when that is set."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from review_runs import inprocess_server, response, review_server, write_run
from support import write_config

from distillpipe.io import read_jsonl, read_records, write_jsonl
from distillpipe.review.decisions import HUMAN_EDITED, latest_decisions

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install 'distillpipe[dev]'")
CHROMIUM = Path("/usr/bin/chromium")
TASKS = ["Name a primary colour.", "Say hello in French.", "Give one tip for sleep.",
         "Name a large animal.", "Describe the sea in a few words."]  # fmt: skip


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.skip("chromium is not installed (make install-test installs it)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield browser
        browser.close()


def save_screenshot(page, tmp_path: Path, name: str) -> Path:
    shot = tmp_path / name
    page.screenshot(path=str(shot), full_page=True)
    if artifacts := os.environ.get("DISTILLPIPE_TEST_ARTIFACTS"):
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(artifacts) / name)
    return shot


def watched_page(browser, problems: list[str]):
    page = browser.new_page()
    page.on(
        "dialog", lambda dialog: (problems.append(f"dialog: {dialog.message}"), dialog.dismiss())
    )
    page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
    page.on("pageerror", lambda error: problems.append(f"pageerror: {error}"))
    return page


def run_pipeline(config: Path, root: Path) -> None:
    env = {**os.environ, "DISTILLPIPE_CACHE_DIR": str(root / "cache")}
    done = subprocess.run([sys.executable, "-m", "distillpipe", "run", str(config), "-q"],
                          capture_output=True, env=env, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """generate (two short samples each) → filter (length, review) → export on the gemma."""
    root = tmp_path_factory.mktemp("review-run")
    write_jsonl(root / "tasks.jsonl", [{"instruction": t} for t in TASKS])
    config = write_config(root / "config.yaml", {
        "name": "reviewed", "seed": 5, "run_dir": str(root), "input": "tasks.jsonl",
        "teacher": {"backend": "llamacpp", "mode": "completion", "n_ctx": 512, "n_threads": 1},
        "generate": {"n": 2, "max_tokens": 6, "temperature": 0.9},
        "filter": [{"type": "length", "reject_truncated": False, "response": {"min_words": 1}},
                   {"type": "review", "overrule": True}],
        "export": {},
    })  # fmt: skip
    run_pipeline(config, root)
    return config, root / "reviewed"


def by_id(path: Path) -> dict[str, dict]:
    return {r["id"]: r for r in read_records(path)} if path.exists() else {}


def export_rows(run: Path) -> dict[str, str]:
    rows = read_jsonl(run / "export" / "train.jsonl")
    return {r["messages"][0]["content"]: r["messages"][-1]["content"] for r in rows}


def test_a_keyboard_review_of_a_real_run_is_applied_by_the_next_run(
    browser, real_run: tuple[Path, Path], tmp_path: Path
):
    config, run = real_run
    kept_before, rejected_before = by_id(run / "filter.jsonl"), by_id(run / "filter.rejected.jsonl")
    stages_before = orjson.loads((run / "manifest.json").read_bytes())["stages"]
    problems: list[str] = []
    with review_server(run, "--sample", "5") as server:
        _, sample, _ = server.request("/api/sample")
        items = sample["items"]
        assert len(items) == 5
        page = watched_page(browser, problems)
        page.goto(server.url)
        page.wait_for_selector("body[data-ready='1']")
        keys = page.keyboard

        def saved(count: int) -> None:
            page.wait_for_selector(f"body[data-saved='{count}']")  # no eval: the CSP forbids it

        assert items[0]["instruction"] in page.inner_text("#record")
        keys.press("a")  # item 0: accept
        saved(1)
        keys.press("n")  # item 1: a note, then reject as wrong
        keys.type("the answer is wrong")
        keys.press("Enter")
        keys.press("r")
        keys.press("1")
        saved(2)
        keys.press("e")  # item 2: edit the chosen response
        keys.press("Control+a")
        keys.type("A human wrote this answer.")
        keys.press("Control+Enter")
        saved(3)
        other = 1 - items[3]["chosen"]  # item 3: pick the other sample
        keys.press("p")
        keys.press(str(other + 1))
        saved(4)
        assert "done 4 · left 1" in page.inner_text("#progress")
        keys.press("k")  # back to the pick: it shows as the chosen sample
        assert page.inner_text(".sample.chosen").startswith(f"sample {other + 1} (chosen)")
        save_screenshot(page, tmp_path, "review-page.png")
        page.close()
    assert problems == []

    ids = [item["id"] for item in items]
    decisions = latest_decisions(run / "review.jsonl")
    assert {i: decisions[i].decision for i in ids[:4]} == dict(
        zip(ids[:4], ["accept", "reject", "edit", "pick"], strict=True)
    )
    assert (decisions[ids[1]].reason, decisions[ids[1]].note) == ("wrong", "the answer is wrong")
    assert ids[4] not in decisions

    run_pipeline(config, run.parent)
    stages = orjson.loads((run / "manifest.json").read_bytes())["stages"]
    assert stages["generate"]["finished_at"] == stages_before["generate"]["finished_at"]
    for redone in ("filter", "export"):
        assert stages[redone]["finished_at"] > stages_before[redone]["finished_at"]
    kept, rejected = by_id(run / "filter.jsonl"), by_id(run / "filter.rejected.jsonl")
    accepted, refused, edited, picked, untouched = ids
    assert set(kept) == (set(kept_before) | {accepted, edited, picked}) - {refused}
    assert rejected[refused]["reject"]["reason"] == "reviewer: wrong: the answer is wrong"
    assert set(rejected) == (set(rejected_before) - {accepted, edited, picked}) | {refused}
    human = kept[edited]["responses"][-1]
    assert (human["text"], human["provenance"]) == ("A human wrote this answer.", HUMAN_EDITED)
    assert kept[edited]["selection"]["chosen"] == len(kept[edited]["responses"]) - 1
    assert kept[picked]["selection"] == {
        "chosen": other,
        "rejected": items[3]["chosen"],
        "by": "review",
    }
    if untouched in kept_before:
        assert kept[untouched] == kept_before[untouched]
    else:
        assert rejected[untouched] == rejected_before[untouched]
    rows = export_rows(run)
    instruction = {item["id"]: item["instruction"] for item in items}
    assert rows[instruction[edited]] == "A human wrote this answer."
    assert rows[instruction[picked]] == kept[picked]["responses"][other]["text"].strip()
    assert instruction[refused] not in rows and instruction[accepted] in rows


MARKUP = ('<script>alert("script")</script> <img src=x onerror="alert(\'img\')"> '
          '<a href="javascript:alert(\'link\')">click me</a>')  # fmt: skip


def test_markup_in_a_record_is_shown_as_text_and_nothing_runs(browser, tmp_path: Path):
    record = {"id": "xss", "instruction": f"Explain {MARKUP}", "input": MARKUP, "system": MARKUP,
              "responses": [{**response(f"Sure: {MARKUP}"), "reasoning": f"think {MARKUP}"},
                            response(MARKUP, 1)],
              "responses_note": MARKUP, "origin": {"stage": "evolve", "operator": MARKUP},
              "scores": {"length": {"why": MARKUP}}}  # fmt: skip
    run = write_run(tmp_path, [record], [], [{"type": "length"}])
    problems: list[str] = []
    with inprocess_server(run) as server:
        page = watched_page(browser, problems)
        page.goto(server.url)
        page.wait_for_selector("body[data-ready='1']")
        shown = page.inner_text("#record")
        assert shown.count(MARKUP) >= 4  # instruction, input, system, samples, lineage
        assert page.locator("#record script, #record img, #record a").count() == 0
        trace = page.locator("#record details")
        assert trace.get_attribute("open") is None  # the reasoning trace starts folded
        page.keyboard.press("t")
        assert page.locator("#record details").get_attribute("open") == ""
        assert f"think {MARKUP}" in page.inner_text("#record details")
        assert page.locator("script").count() == 1  # the page's own review.js
        page.keyboard.press("a")
        page.wait_for_selector("body[data-saved='1']")
        save_screenshot(page, tmp_path, "review-page-markup.png")
        page.close()
    assert problems == []
    assert latest_decisions(run / "review.jsonl")["xss"].decision == "accept"
