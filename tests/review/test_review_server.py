"""The review server: its URL's token, the Origin and Host it accepts, what it serves,
the headers every answer carries, and a decision confirmed before a SIGKILL survives."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from review_runs import inprocess_server, response, review_server, write_run

from distillpipe.review.decisions import latest_decisions
from distillpipe.review.server import CSP


@pytest.fixture
def run(tmp_path: Path) -> Path:
    kept = [{"id": f"k{i}", "instruction": f"task {i}", "responses": [response(f"answer {i}")],
             "scores": {"length": 1}} for i in range(4)]  # fmt: skip
    rejected = [{"id": "x0", "instruction": "bad", "responses": [response("no")],
                 "reject": {"filter": "length", "reason": "too short", "score": 1}}]  # fmt: skip
    (tmp_path / "secret.txt").write_text("not for the page")
    return write_run(tmp_path, kept, rejected, [{"type": "length"}, {"type": "review"}])


def test_the_page_and_its_assets_carry_a_strict_csp_and_the_sample_needs_the_token(run: Path):
    with inprocess_server(run) as server:
        assert server.url.startswith("http://127.0.0.1:") and len(server.token) >= 40
        for path in ("/", "/review.js", "/review.css"):
            status, _, headers = server.request(path, token=None)
            assert status == 200
            assert headers["Content-Security-Policy"] == CSP
            assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP
            assert headers["X-Content-Type-Options"] == "nosniff"
        assert server.request("/api/sample", token=None)[0] == 403
        assert server.request("/api/sample", token="wrong")[0] == 403
        status, sample, _ = server.request("/api/sample")
        assert status == 200 and {i["id"] for i in sample["items"]} == {
            "k0",
            "k1",
            "k2",
            "k3",
            "x0",
        }


def test_nothing_outside_its_assets_and_the_sample_is_served(run: Path):
    with inprocess_server(run) as server:
        for path in ("/manifest.json", "/../secret.txt", "/filter.jsonl", "/review.jsonl",
                     "/static/review.js", "/%2e%2e/secret.txt", "/index.html"):  # fmt: skip
            status, body, headers = server.request(path)
            assert status == 404, path
            assert "not for the page" not in str(body)
            assert headers["Content-Security-Policy"] == CSP


def test_a_write_without_the_token_or_from_another_origin_is_refused(run: Path):
    decision = {"id": "k0", "decision": "accept"}
    with inprocess_server(run) as server:
        assert server.request("/api/decisions", decision, token=None)[0] == 403
        assert server.request("/api/decisions", decision, token="guess")[0] == 403
        assert server.request("/api/decisions", decision, origin=None)[0] == 403
        assert server.request("/api/decisions", decision, origin="http://evil.example")[0] == 403
        port = server.origin.rsplit(":", 1)[1]
        assert (
            server.request("/api/decisions", decision, origin=f"http://127.0.0.1:{int(port) + 1}")[
                0
            ]
            == 403
        )
        # a page whose DNS name was rebound to 127.0.0.1 sends its own Host
        assert server.request("/api/sample", host=f"evil.example:{port}")[0] == 421
        assert not (run / "review.jsonl").exists()
        status, answer, _ = server.request("/api/decisions", {**decision, "reviewer": "forged"})
        assert status == 200 and answer["saved"]["decision"] == "accept"
        assert "reviewer" not in answer["saved"]  # the server says who decides, not the page
    assert latest_decisions(run / "review.jsonl")["k0"].decision == "accept"


def test_bad_decisions_are_refused_with_the_reason(run: Path):
    with inprocess_server(run) as server:
        status, body, _ = server.request("/api/decisions", {"id": "k0", "decision": "reject"})
        assert status == 400 and "reason" in body["error"]
        status, body, _ = server.request("/api/decisions", {"id": "k0", "decision": "nuke"})
        assert status == 400 and body["error"].startswith("decision:")
        status, body, _ = server.request(
            "/api/decisions", {"id": "elsewhere", "decision": "accept"}
        )
        assert status == 404  # only records of this review's sample
        status, body, _ = server.request(
            "/api/decisions", {"id": "k0", "decision": "accept", "source": "x", "extra": 1}
        )
        assert status == 400
    assert not (run / "review.jsonl").exists()


def test_a_confirmed_decision_survives_the_server_killed_at_once(run: Path):
    with review_server(run, "--reviewer", "ada") as server:
        status, _, _ = server.request(
            "/api/decisions", {"id": "x0", "decision": "reject", "reason": "wrong", "note": "2+2=5"}
        )
        assert status == 200  # confirmed: it is on disk now
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(timeout=10)
        assert server.process.returncode == -signal.SIGKILL
    decision = latest_decisions(run / "review.jsonl")["x0"]
    assert (decision.decision, decision.reason, decision.note) == ("reject", "wrong", "2+2=5")
    assert decision.reviewer == "ada" and decision.source == "page"


def test_two_servers_on_one_run_see_each_others_decisions(run: Path):
    with inprocess_server(run) as first, inprocess_server(run) as second:
        assert first.request("/api/decisions", {"id": "k1", "decision": "accept"})[0] == 200
        _, sample, _ = second.request("/api/sample")
        assert sample["decisions"]["k1"]["decision"] == "accept"
