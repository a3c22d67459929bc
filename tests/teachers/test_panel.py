"""The panel: routing by `share` is a deterministic draw of (seed, member, record id),
members without a share answer every record, `share: 0` members answer none; a plain
`teacher:` is a panel of one that names no member in its requests (so its cache keys
are those of a run without panels); each member's budget holds inside the run's."""

from __future__ import annotations

import pytest

from distillpipe.config import ConfigSource, parse_config
from distillpipe.dispatch import call_key
from distillpipe.errors import BudgetExceededError, ConfigError
from distillpipe.teachers.base import Call, Completion, Request, SamplingParams, teacher_class
from distillpipe.teachers.cost import BudgetGuard, Price, TeacherBudget
from distillpipe.teachers.ledger import SpendLedger
from distillpipe.teachers.panel import Panel, share_draw

SOURCE = ConfigSource("c.yaml", None)


def config_of(teachers: list[dict] | None = None, **extra: object):
    data = {"teachers": teachers, **extra} if teachers else dict(extra)
    return parse_config(data, SOURCE)


def member(name: str, **keys: object) -> dict:
    return {"name": name, "backend": "llamacpp", "mode": "completion", **keys}


def test_a_share_routes_that_fraction_of_records_and_the_same_ones_every_time():
    panel = Panel.from_config(config_of([member("all"), member("some", share=0.25)], seed=5))
    ids = [f"r{i}" for i in range(2000)]
    routed = [[m.name for m in panel.route(i)] for i in ids]
    assert all(names[0] == "all" for names in routed)
    fraction = sum("some" in names for names in routed) / len(ids)
    assert 0.22 < fraction < 0.28
    again = Panel.from_config(config_of([member("all"), member("some", share=0.25)], seed=5))
    assert [[m.name for m in again.route(i)] for i in ids] == routed
    other_seed = Panel.from_config(config_of([member("all"), member("some", share=0.25)], seed=6))
    assert [[m.name for m in other_seed.route(i)] for i in ids] != routed


def test_a_record_no_share_picks_goes_to_the_first_member_that_answers():
    panel = Panel.from_config(
        config_of([member("judge", share=0), member("a", share=0.01), member("b", share=0.01)])
    )
    routed = {tuple(m.name for m in panel.route(f"r{i}")) for i in range(300)}
    assert ("a",) in routed and all("judge" not in names for names in routed)
    assert [m.name for m in panel.answering] == ["a", "b"]


def test_share_draws_are_uniform_in_the_unit_interval():
    draws = [share_draw(0, "m", f"r{i}") for i in range(1000)]
    assert all(0 <= d < 1 for d in draws) and 0.45 < sum(draws) / len(draws) < 0.55


def test_member_lookup_names_the_members():
    panel = Panel.from_config(config_of([member("a"), member("b")]))
    assert panel.member().name == "a" and panel.member("b").name == "b"
    with pytest.raises(ConfigError, match=r"no teacher named 'c' \(named: a, b\)"):
        panel.member("c")


def test_a_plain_teacher_is_a_panel_of_one_whose_requests_name_no_member():
    config = config_of()
    panel = Panel.from_config(config)
    assert len(panel.members) == 1 and not panel.several
    assert panel.request_name(panel.member()) is None
    named = Panel.from_config(config_of([member("a")]))
    assert named.request_name(named.member()) == "a"


def test_a_member_name_enters_the_cache_key_and_none_leaves_the_old_key():
    request = Request(id="r", params=SamplingParams(), prompt="hi")
    identity = {"backend": "llamacpp", "model": "m"}
    plain = call_key(identity, request, 0, 0)
    from dataclasses import replace

    assert call_key(identity, replace(request, teacher=None), 0, 0) == plain
    a = call_key(identity, replace(request, teacher="a"), 0, 0)
    b = call_key(identity, replace(request, teacher="b"), 0, 0)
    assert len({plain, a, b}) == 3


def Priced():
    """A real OpenAI-compatible teacher on loopback (built, never asked)."""
    options = {"backend": "openai", "model": "gpt-4o-mini", "base_url": "http://127.0.0.1:9/v1"}
    config = config_of([{"name": "paid", **options}])
    return teacher_class("openai")(config.teachers[0].teacher)


def _call(max_tokens: int = 100) -> Call:
    request = Request(id="r1", params=SamplingParams(max_tokens=max_tokens), prompt="hello")
    return Call(request, 0, "k", 1)


def test_a_members_max_cost_stops_it_and_its_spending_counts_in_the_runs_guard():
    guard = BudgetGuard(limit=10.0)
    price = Price(input=1000.0, output=1000.0)  # USD per million: 0.1 per 100 tokens
    budget = TeacherBudget("big", 0.25, guard, Priced(), price, "generate")
    held = budget.reserve(_call())
    assert held > 0 and guard.reserved == pytest.approx(held)
    budget.settle(held, Completion("x", "m", "stop", prompt_tokens=50, completion_tokens=50))
    assert budget.spent == pytest.approx(0.1) and guard.spent == pytest.approx(0.1)
    assert guard.reserved == pytest.approx(0.0) and guard.now == {"generate": pytest.approx(0.1)}
    budget.settle(budget.reserve(_call()), Completion("x", "m", "stop", 50, 50))
    with pytest.raises(BudgetExceededError, match=r"teachers: big: max_cost 0\.25 USD reached"):
        budget.reserve(_call())


def test_a_members_max_cost_counts_what_earlier_invocations_spent_on_it(tmp_path):
    price = Price(input=1000.0, output=1000.0)  # 0.1 USD per 100 tokens
    first = BudgetGuard(None, SpendLedger(tmp_path / "spend.jsonl"))
    budget = TeacherBudget("big", 0.25, first, Priced(), price, "generate")
    for _ in range(2):
        budget.settle(budget.reserve(_call()), Completion("x", "m", "stop", 50, 50))
    first.close()
    rerun = BudgetGuard(None, SpendLedger(tmp_path / "spend.jsonl"))
    assert rerun.before_by_teacher == {"big": pytest.approx(0.2)}
    other = TeacherBudget("small", 0.25, rerun, Priced(), price, "generate")
    other.settle(other.reserve(_call()), Completion("x", "m", "stop", 50, 50))  # its own limit
    again = TeacherBudget("big", 0.25, rerun, Priced(), price, "generate")
    with pytest.raises(BudgetExceededError, match=r"spent 0\.2000 USD, 0\.2000 of it by earlier"):
        again.reserve(_call())


def test_the_runs_guard_holds_for_the_panel_as_a_whole():
    guard = BudgetGuard(limit=0.15)
    price = Price(input=1000.0, output=1000.0)
    a = TeacherBudget("a", None, guard, Priced(), price, "generate")
    b = TeacherBudget("b", None, guard, Priced(), price, "generate")
    a.settle(a.reserve(_call()), Completion("x", "m", "stop", 50, 50))
    with pytest.raises(BudgetExceededError, match=r"--max-cost 0\.15 USD reached"):
        b.reserve(_call())


def test_a_cost_limit_needs_the_members_price():
    with pytest.raises(ConfigError, match="no price known for model 'gpt-4o-mini' \\(teacher a\\)"):
        TeacherBudget("a", 1.0, None, Priced(), None)


def test_a_generate_run_stops_where_a_members_max_cost_is_reached(tmp_path):
    from fault_server import FaultServer
    from support import write_records

    from distillpipe.runner import run_stage
    from distillpipe.stages import stage_named

    server = FaultServer().start()
    try:
        paid = {"backend": "openai", "model": "gpt-4o-mini", "base_url": f"{server.url}/v1"}
        config = config_of(
            [
                {
                    "name": "free",
                    "backend": "openai",
                    "model": "gemma",
                    "base_url": f"{server.url}/v1",
                },
                {"name": "paid", **paid, "max_cost": 0.05, "concurrency": 1},
            ],
            generate={"n": 1, "max_tokens": 20},
            cost={"prices": {"gpt-4o-mini": {"input": 1000.0, "output": 1000.0}}},
        )
        source = write_records(tmp_path / "in.jsonl", 8)
        guard = BudgetGuard(limit=None)
        with pytest.raises(BudgetExceededError, match=r"teachers: paid: max_cost 0\.05 USD"):
            run_stage(stage_named("generate"), config, source, tmp_path / "out.jsonl", budget=guard)
    finally:
        server.stop()
    assert 0 < guard.spent <= 0.05  # what the paid member spent, in the run's guard too
    assert not (tmp_path / "out.jsonl").exists()
