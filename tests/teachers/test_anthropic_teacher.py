"""The anthropic backend: how requests map onto the Messages API, and what comes back."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from api_runs import api_config, generate
from fault_server import FaultServer

from distillpipe.dispatch import Dispatcher
from distillpipe.errors import ConfigError, MissingApiKeyError
from distillpipe.teachers.anthropic import AnthropicOptions, AnthropicTeacher
from distillpipe.teachers.base import Request, SamplingParams


def teacher_for(server: FaultServer, **options) -> AnthropicTeacher:
    return AnthropicTeacher(
        AnthropicOptions(
            model="claude-3-5-haiku-20241022", base_url=server.url, api_key="sk-ant-test", **options
        )
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
