"""Per-teacher accounting: each member's calls, cache hits, tokens, cost, latency and
failures from its real dispatcher (a real SQLite cache, the fault server as the paid
teacher, with faults it retries); whose sample was chosen, summed across stages."""

from __future__ import annotations

import asyncio

from fault_server import FaultServer

from distillpipe.cache import ResponseCache
from distillpipe.dispatch import Dispatcher
from distillpipe.panel_stats import (
    add_member_stats,
    chosen_teacher,
    member_stats,
    run_member_stats,
    teacher_rows,
    win_counts,
)
from distillpipe.teachers.base import Request, SamplingParams, teacher_class
from distillpipe.teachers.openai import OpenAIOptions


def record(chosen: int | None, *teachers: str) -> dict:
    responses = [{"text": f"t{i}", "teacher": name} for i, name in enumerate(teachers)]
    out = {"id": "r", "responses": responses}
    if chosen is not None:
        out["selection"] = {"chosen": chosen, "rejected": None, "by": "reward"}
    return out


def test_wins_count_whose_sample_was_chosen_and_who_answered():
    records = [
        record(1, "a", "b"),
        record(0, "a", "b"),
        record(2, "a", "b", "b"),
        record(None, "b", "a"),  # no selection: the first sample stands
        record(None, "a"),
    ]
    assert [chosen_teacher(r) for r in records] == ["b", "a", "b", "b", "a"]
    assert win_counts(records) == {
        "a": {"records": 5, "chosen": 2, "win_rate": 0.4},
        "b": {"records": 4, "chosen": 3, "win_rate": 0.6},
    }
    assert win_counts([{"id": "x", "responses": [{"text": "t"}]}]) == {}


def test_a_members_dispatcher_counts_its_calls_hits_tokens_cost_and_retried_failures(tmp_path):
    server = FaultServer().start()
    try:
        options = OpenAIOptions(
            backend="openai", model="gpt-4o-mini", base_url=f"{server.url}/v1", retry_backoff=0.01
        )
        teacher = teacher_class("openai")(options)
        cache = ResponseCache(tmp_path / "cache.sqlite")
        dispatcher = Dispatcher(teacher, cache, 0)
        dispatcher.price = lambda c: (c.prompt_tokens + c.completion_tokens) * 1e-3
        requests = [
            Request(id=f"r{i}", params=SamplingParams(max_tokens=5), prompt=None,
                    messages=({"role": "user", "content": f"q{i}"},), n=2, teacher="paid")
            for i in range(2)
        ]  # fmt: skip
        server.set_fault("500", times=2)  # each call: two 500s, then its answer

        async def twice() -> None:
            await dispatcher.resolve(requests)
            await dispatcher.resolve(requests)  # every call a cache hit now
            await teacher.aclose()

        asyncio.run(twice())
        cache.close()
    finally:
        server.stop()
    stats = member_stats({"paid": dispatcher}, {"paid": 1})["paid"]
    assert (stats["calls"], stats["cache_hits"], stats["teacher_calls"]) == (8, 4, 4)
    assert stats["prompt_tokens"] > 0 and stats["completion_tokens"] > 0
    assert stats["cost_usd"] > 0 and stats["latency_s"] > 0
    # each of the 4 calls failed twice (500, retried), plus one failure that ended a stage
    assert stats["failures"] == 4 * 2 + 1


def test_stages_add_up_per_member_and_rows_join_config_totals_and_wins():
    manifest = {
        "stages": {
            "seed": {"stats": {"teachers": {"a": {"calls": 2, "teacher_calls": 2,
                                                  "teacher_seconds": 1.0, "latency_s": 0.5}}}},
            "generate": {"stats": {"teachers": {
                "a": {"calls": 4, "teacher_calls": 2, "teacher_seconds": 3.0, "latency_s": 1.5},
                "b": {"calls": 4, "teacher_calls": 0, "teacher_seconds": 0.0, "latency_s": None},
            }}},
            "export": {"stats": {}},
        }
    }  # fmt: skip
    totals = run_member_stats(manifest)
    assert totals["a"] == {"calls": 6, "teacher_calls": 4, "teacher_seconds": 4.0, "latency_s": 1.0}
    assert totals["b"]["latency_s"] is None
    wins = {"b": {"records": 3, "chosen": 3, "win_rate": 1.0}}
    rows = teacher_rows(
        [{"name": "a", "backend": "llamacpp", "model": "m"}, {"name": "b", "backend": "openai"}],
        totals,
        wins,
    )
    assert [(r["name"], r["calls"], r["chosen"], r["win_rate"]) for r in rows] == [
        ("a", 6, 0, 0.0),
        ("b", 4, 3, 1.0),
    ]
    assert add_member_stats({}, {}) == {}
