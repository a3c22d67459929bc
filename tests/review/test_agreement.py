"""The report's review section on a run with known decisions: each automatic filter's
confusion table against the reviewer, precision and recall of its rejects, the reasons
people gave most, and the disagreements."""

from __future__ import annotations

import re
from pathlib import Path

from review_runs import response, write_run

from distillpipe.report import render
from distillpipe.review.decisions import Decision, append_decisions

FILTERS = [{"type": "length"}, {"type": "perplexity", "max": 5.0}, {"type": "review"}]


def rec(record_id: str, scores: dict, reject: dict | None = None, **extra) -> dict:
    record = {"id": record_id, "instruction": f"instruction {record_id}",
              "responses": [response(f"answer {record_id}")],
              "scores": scores, **extra}  # fmt: skip
    if reject:
        record["reject"] = reject
    return record


def known_run(tmp_path: Path) -> Path:
    both = {"length": {"w": 3}, "perplexity": 2.0}
    length_no = {"filter": "length", "reason": "response 0: 1 words < min 3", "score": {"w": 1}}
    kept = [
        rec("a", both), rec("b", both), rec("h", both), rec("i", both),
        rec("g", both, overruled=[{**length_no, "by": "review"}]),
    ]  # fmt: skip
    rejected = [
        rec("c", {"length": {"w": 1}}, length_no),
        rec("d", {"length": {"w": 1}}, length_no),
        rec("e", {"length": {"w": 3}, "perplexity": 9.0},
            {"filter": "perplexity", "reason": "perplexity 9 > max 5", "score": 9.0}),
        rec("f", {**both, "review": {"decision": "reject"}},
            {"filter": "review", "reason": "reviewer: formatting", "score": None}),
    ]  # fmt: skip
    run = write_run(tmp_path, kept, rejected, FILTERS)
    append_decisions(run / "review.jsonl", [
        Decision(id="a", decision="reject", reason="wrong"),  # changed below: last one wins
        Decision(id="a", decision="accept"),
        Decision(id="b", decision="reject", reason="wrong", note="2+2 is not 5"),
        Decision(id="c", decision="reject", reason="wrong"),
        Decision(id="d", decision="edit", text="better"),
        Decision(id="e", decision="reject", reason="low quality"),
        Decision(id="f", decision="reject", reason="formatting"),
        Decision(id="g", decision="pick", chosen=0),
        Decision(id="h", decision="skip"),
    ])  # fmt: skip
    return run


def cells(html: str, name: str) -> list[str]:
    row = re.search(rf'<tr data-filter="{name}">(.*?)</tr>', html, re.S).group(1)
    return re.findall(r"<td>([^<]*)</td>", row)


def test_the_agreement_table_counts_each_filter_against_the_reviewer(tmp_path: Path):
    html = render(known_run(tmp_path))
    # length saw a..g: kept a (accept), b e f (reject); rejected d g (accept), c (reject)
    assert cells(html, "length") == ["length", "7", "1", "3", "2", "1", "29%", "0.33", "0.25"]
    # perplexity saw a b e f g (c, d never reached it): it rejected e, which people rejected
    assert cells(html, "perplexity") == [
        "perplexity",
        "5",
        "2",
        "2",
        "0",
        "1",
        "60%",
        "1.00",
        "0.33",
    ]
    assert 'data-filter="review"' not in html  # the reviewer is not compared with itself
    reasons = html[html.index('id="review-reasons"') : html.index('id="review-agreement"')]
    assert re.findall(r"<tr><td>([^<]+)</td><td>(\d+)</td></tr>", reasons) == [
        ("wrong", "2"), ("low quality", "1"), ("formatting", "1")]  # fmt: skip
    assert "8 records reviewed:\naccept 1, edit 1, pick 1, reject 4, skip 1." in html


def test_disagreements_show_both_sides_with_their_reasons(tmp_path: Path):
    html = render(known_run(tmp_path))
    length = html[html.index('id="review-disagreements-length"') :]
    length = length[: length.index("</table>")]
    assert "instruction b" in length and "reject: wrong" in length and "2+2 is not 5" in length
    assert "rejected: response 0: 1 words &lt; min 3" in length and "edit" in length
    assert "instruction a" not in length  # an agreement is no example


def test_a_run_nobody_reviewed_has_no_review_section(tmp_path: Path):
    run = known_run(tmp_path)
    (run / "review.jsonl").unlink()
    assert 'id="review"' not in render(run)
