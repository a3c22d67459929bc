"""The review sample: seeded and stable, stratified into kept, rejected per filter and
borderline records nearest a threshold, in configurable shares, with what the page shows."""

from __future__ import annotations

from pathlib import Path

import pytest
from review_runs import response, write_run

from distillpipe.errors import InputError
from distillpipe.review.sample import draw_sample, parse_shares

FILTERS = [{"type": "length"}, {"type": "perplexity", "max": 6.0}, {"type": "review"}]


def make_run(tmp_path: Path, name: str = "hand", reverse: bool = False) -> Path:
    # perplexity 1 + i/3 on 30 records, rejected above 6: those near 6 are borderline
    kept, rejected = [], []
    for i in range(40):
        record = {"id": f"r{i:02d}", "instruction": f"task {i}", "responses": [response(f"a{i}")],
                  "origin": {"stage": "evolve", "parent_id": "p0", "operator": "deepen",
                             "round": 1},
                  "scores": {"length": {"words": 3}}}  # fmt: skip
        if i < 30:
            record["scores"]["perplexity"] = 1.0 + i / 3
            (kept if record["scores"]["perplexity"] <= 6 else rejected).append(record)
            if record in rejected:
                record["reject"] = {"filter": "perplexity", "reason": "too high",
                                    "score": record["scores"].pop("perplexity")}  # fmt: skip
        else:
            record["scores"] = {"length": {"words": 1}}
            record["reject"] = {"filter": "length", "reason": "short", "score": {"words": 1}}
            rejected.append(record)
    if reverse:
        kept.reverse()
        rejected.reverse()
    seeds = [{"id": "p0", "instruction": "the parent task"}]
    return write_run(tmp_path, kept, rejected, FILTERS, name=name, seed=3,
                     extra_stages={"seed": seeds})  # fmt: skip


def test_the_same_run_and_seed_give_the_same_sample_whatever_the_file_order(tmp_path: Path):
    first = draw_sample(make_run(tmp_path, "a"), 12)
    again = draw_sample(make_run(tmp_path, "b", reverse=True), 12)
    assert [i["id"] for i in first["items"]] == [i["id"] for i in again["items"]]
    other = draw_sample(make_run(tmp_path, "a"), 12, seed=99)
    assert {i["id"] for i in other["items"]} != {i["id"] for i in first["items"]}


def test_strata_follow_the_shares_and_rejects_are_split_between_filters(tmp_path: Path):
    items = draw_sample(make_run(tmp_path), 20)["items"]
    strata = [i["stratum"] for i in items]
    assert len(items) == len({i["id"] for i in items}) == 20
    assert strata.count("kept") == 10
    assert strata.count("rejected:perplexity") == strata.count("rejected:length") == 3
    assert sum(s.startswith("borderline:perplexity") for s in strata) == 4
    for item in items:
        if not item["stratum"].startswith("borderline"):
            assert item["pipeline"] == item["stratum"].split(":")[0]


def test_borderline_records_are_those_nearest_the_threshold(tmp_path: Path):
    items = draw_sample(make_run(tmp_path), 4, parse_shares("borderline=1"))["items"]
    # perplexity = 1 + i/3: i = 15 gives 6.0, then 14 and 16, then 13 or 17
    assert {i["id"] for i in items} >= {"r14", "r15", "r16"}
    assert all(i["stratum"] == "borderline:perplexity" for i in items)
    # only r13..r17 lie within a tenth of the spread of 6: the other places go elsewhere
    items = draw_sample(make_run(tmp_path, "b"), 10, parse_shares("borderline=1"))["items"]
    near = {i["id"] for i in items if i["stratum"].startswith("borderline")}
    assert near == {"r13", "r14", "r15", "r16", "r17"} and len(items) == 10


def test_a_short_stratum_leaves_its_places_to_the_others(tmp_path: Path):
    items = draw_sample(make_run(tmp_path), 40, parse_shares("rejected=1"))["items"]
    assert len(items) == 40


def test_an_item_carries_what_the_page_shows(tmp_path: Path):
    items = draw_sample(make_run(tmp_path), 40)["items"]
    item = next(i for i in items if i["id"] == "r35")
    assert item["origin"] == {
        "stage": "evolve",
        "parent_id": "p0",
        "operator": "deepen",
        "round": 1,
    }
    assert item["parent"] == "the parent task"
    assert item["pipeline"] == "rejected"
    assert item["filters"] == [
        {"name": "length", "verdict": "rejected", "score": {"words": 1}, "reason": "short"},
        {"name": "perplexity", "verdict": "not reached", "score": None, "reason": ""},
        {"name": "review", "verdict": "no decision applied yet", "score": None, "reason": ""},
    ]
    assert item["responses"][0]["text"] == "a35" and item["reviewed"].startswith("sha256:")


@pytest.mark.parametrize("text", ["kept=x", "nope=1", "kept=-1", "kept=0"])
def test_bad_shares_are_one_line_errors(text: str):
    with pytest.raises(InputError, match="--shares"):
        parse_shares(text)


def test_a_folder_that_is_no_run_is_an_error(tmp_path: Path):
    with pytest.raises(InputError, match=r"no manifest\.json"):
        draw_sample(tmp_path)
