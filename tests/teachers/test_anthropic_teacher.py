"""The anthropic backend: how requests map onto the Messages API, and what comes back."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from api_runs import api_config, generate
from fault_server import THINKING, FaultServer

from distillpipe.config import load_config
from distillpipe.dispatch import Dispatcher
from distillpipe.errors import ConfigError, MissingApiKeyError
from distillpipe.teachers.anthropic import AnthropicOptions, AnthropicTeacher
from distillpipe.teachers.base import Request, SamplingParams
from distillpipe.teachers.cost import find_price

THINKER = "claude-sonnet-4-20250514"


def teacher_for(
    server: FaultServer, model: str = "claude-3-5-haiku-20241022", **options
) -> AnthropicTeacher:
    return AnthropicTeacher(
        AnthropicOptions(model=model, base_url=server.url, api_key="sk-ant-test", **options)
    )


def resolve(teacher: AnthropicTeacher, requests: list[Request]):
    async def run():
        try:
            return await Dispatcher(teacher, None, config_seed=5).resolve(requests)
        finally:
            await teacher.aclose()

    return asyncio.run(run())


def test_system_stop_sampling_and_max_tokens_map_onto_the_messages_api(
    fault_server: FaultServer,
):
    params = SamplingParams(temperature=0.3, top_p=0.9, max_tokens=42, stop=("\n\n", "END"))
    messages = (
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Name a river."},
    )
    [[completion]] = resolve(teacher_for(fault_server), [Request("q", params, messages)])
    [sent] = fault_server.received
    assert sent["body"] == {
        "model": "claude-3-5-haiku-20241022",
        "max_tokens": 42,
        "messages": [{"role": "user", "content": "Name a river."}],
        "temperature": 0.3,
        "top_p": 0.9,
        "system": "Be terse.",
        "stop_sequences": ["\n\n", "END"],
    }
    assert sent["headers"]["x-api-key"] == "sk-ant-test"
    assert sent["headers"]["anthropic-version"] == "2023-06-01"
    assert completion.text == "echo: Name a river."
    assert completion.finish_reason == "stop"
    assert (completion.prompt_tokens, completion.completion_tokens) == (5, 4)


def test_n_samples_are_separate_requests_each_recorded(fault_server: FaultServer):
    request = Request("q", SamplingParams(max_tokens=8), ({"role": "user", "content": "Hi"},), n=3)
    [samples] = resolve(teacher_for(fault_server), [request])
    assert len(samples) == 3 and len(fault_server.received) == 3
    assert all(s.completion_tokens > 0 for s in samples)


def test_a_refusal_is_recorded_as_content_filter(fault_server: FaultServer, tmp_path: Path):
    fault_server.set_fault("refusal")
    _, records = generate(api_config(fault_server, "anthropic"), tmp_path, 2)
    assert [r["responses"][0]["finish_reason"] for r in records] == ["content_filter"] * 2
    assert [r["responses"][0]["text"] for r in records] == ["", ""]


def test_usage_and_cost_reach_the_stage_stats(fault_server: FaultServer, tmp_path: Path):
    result, _ = generate(api_config(fault_server, "anthropic"), tmp_path, 4)
    teacher = result.stats["teacher"]
    assert teacher["prompt_tokens"] > 0 and teacher["completion_tokens"] > 0
    expected = (teacher["prompt_tokens"] * 0.80 + teacher["completion_tokens"] * 4.00) / 1e6
    assert teacher["cost_usd"] == pytest.approx(expected)


def test_a_temperature_above_one_is_refused_naming_the_key(fault_server: FaultServer):
    request = Request("q", SamplingParams(temperature=1.5), ({"role": "user", "content": "Hi"},))
    with pytest.raises(ConfigError, match=r"generate\.temperature: 1\.5 is above 1\.0"):
        resolve(teacher_for(fault_server), [request])


def test_raw_prompts_are_refused(fault_server: FaultServer):
    with pytest.raises(ConfigError, match="takes chat messages"):
        resolve(teacher_for(fault_server), [Request("q", SamplingParams(), prompt="Once")])


def test_a_missing_key_is_one_actionable_sentence(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(MissingApiKeyError, match=r"set ANTHROPIC_API_KEY or teacher\.api_key"):
        AnthropicTeacher(AnthropicOptions(model="claude-sonnet-4-5"))


# -- extended thinking and the newer models' sampling rules ---------------------

MESSAGES = (
    {"role": "system", "content": "Be terse."},
    {"role": "user", "content": "Name a river."},
)


def test_thinking_sends_the_budget_and_no_sampling_knob(fault_server: FaultServer):
    params = SamplingParams(temperature=0.3, top_p=0.9, max_tokens=4096, stop=("END",))
    teacher = teacher_for(fault_server, THINKER, thinking_budget=2048)
    [[completion]] = resolve(teacher, [Request("q", params, MESSAGES)])
    assert fault_server.rejected == []
    [sent] = fault_server.received
    assert sent["body"] == {
        "model": THINKER,
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": "Name a river."}],
        "system": "Be terse.",
        "stop_sequences": ["END"],
        "thinking": {"type": "enabled", "budget_tokens": 2048},
    }
    assert completion.text == "echo: Name a river."  # the thinking block is not the answer
    thought = len(THINKING.split())
    assert completion.completion_tokens == 4 + thought  # output_tokens holds the thinking
    assert 0 < completion.reasoning_tokens < completion.completion_tokens


def test_the_newest_models_get_temperature_alone(fault_server: FaultServer):
    params = SamplingParams(temperature=0.3, max_tokens=42)
    teacher = teacher_for(fault_server, "claude-sonnet-4-5-20250929")
    resolve(teacher, [Request("q", params, MESSAGES)])
    assert fault_server.rejected == []
    [sent] = fault_server.received
    assert sent["body"]["temperature"] == 0.3 and "top_p" not in sent["body"]


@pytest.mark.parametrize("mode", ["chat", "batch"])
def test_a_thinking_run_finishes_and_bills_the_thinking_as_output(
    fault_server: FaultServer, tmp_path: Path, mode: str
):
    config = api_config(
        fault_server, "anthropic", generate={"max_tokens": 2048, "top_p": 0.5},
        model=THINKER, mode=mode, thinking_budget=1024,
    )  # fmt: skip
    result, records = generate(config, tmp_path, 4, state_dir=tmp_path / "batches")
    assert fault_server.rejected == []
    assert [r["responses"][0]["text"] for r in records] == [
        f"echo: Say the number {i} in words." for i in range(4)
    ]
    stats = result.stats["teacher"]
    assert stats["reasoning_tokens"] > 0
    assert records[0]["responses"][0]["usage"]["reasoning_tokens"] > 0
    price = find_price(THINKER)
    assert price is not None
    expected = stats["prompt_tokens"] * price.input + stats["completion_tokens"] * price.output
    assert stats["cost_usd"] == pytest.approx(expected / 1e6 * (0.5 if mode == "batch" else 1))


def test_a_request_under_the_thinking_budget_is_refused_before_it_is_sent(
    fault_server: FaultServer,
):
    teacher = teacher_for(fault_server, THINKER, thinking_budget=2048)
    request = Request("q", SamplingParams(max_tokens=16), MESSAGES)
    with pytest.raises(ConfigError, match=r"request q: max_tokens: 16 is not above"):
        resolve(teacher, [request])
    assert fault_server.received == [] and fault_server.rejected == []


def test_thinking_keys_hold_the_budget_and_not_the_dropped_temperature(fault_server: FaultServer):
    def key(params: SamplingParams, budget: int | None) -> str:
        teacher = teacher_for(fault_server, THINKER, thinking_budget=budget)
        [call] = Dispatcher(teacher, None).calls_for(Request("q", params, MESSAGES))
        return call.key

    cold = SamplingParams(temperature=0.0, max_tokens=4096)
    hot = SamplingParams(temperature=1.0, max_tokens=4096)
    assert key(cold, 2048) == key(hot, 2048)
    assert key(cold, 2048) != key(cold, 1024)
    assert key(cold, None) != key(hot, None)


def write_config(tmp_path: Path, teacher: str, rest: str = "generate:\n  max_tokens: 2048\n"):
    path = tmp_path / "config.yaml"
    path.write_text("teacher:\n  backend: anthropic\n  api_key: sk-ant-test\n" + teacher + rest)
    return path


@pytest.mark.parametrize(
    ("teacher", "rest", "error"),
    [
        (f"  model: {THINKER}\n  thinking_budget: 4096\n", "generate:\n  max_tokens: 4096\n",
         r"config\.yaml:7: generate\.max_tokens: 4096 is not above teacher\.thinking_budget "
         r"4096: the thinking counts toward max_tokens"),
        (f"  model: {THINKER}\n  thinking_budget: 1024\n",
         "generate:\n  max_tokens: 2048\nevolve:\n  max_tokens: 2048\n",
         r"config\.yaml:8: evolve\.elimination\.equality_max_tokens: 8 is not above"),
        ("  model: claude-3-5-haiku-20241022\n  thinking_budget: 2048\n", "",
         r"config\.yaml:5: teacher\.thinking_budget: claude-3-5-haiku-20241022 has no "
         r"extended thinking"),
        (f"  model: {THINKER}\n  thinking_budget: 512\n", "",
         r"config\.yaml:5: teacher\.thinking_budget: Input should be greater than or equal "
         r"to 1024"),
        ("  model: claude-haiku-4-5\n", "generate:\n  top_p: 0.9\n",
         r"config\.yaml:6: generate\.top_p: claude-haiku-4-5 does not accept top_p; leave it "
         r"at 1\.0"),
    ],
)  # fmt: skip
def test_what_the_messages_api_rejects_fails_at_config_validation(
    tmp_path: Path, teacher: str, rest: str, error: str
):
    with pytest.raises(ConfigError, match=error):
        load_config(write_config(tmp_path, teacher, rest))


def test_thinking_leaves_top_p_free_on_the_newest_models(tmp_path: Path):
    load_config(
        write_config(
            tmp_path, "  model: claude-haiku-4-5\n  thinking_budget: 1024\n",
            "generate:\n  max_tokens: 2048\n  top_p: 0.9\n",
        )
    )  # fmt: skip
