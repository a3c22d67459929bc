from pathlib import Path

import pytest
from fault_server import FaultServer
from support import small_llamacpp_config, write_config

from distillpipe.config import ConfigSource, load_config, parse_config
from distillpipe.io import read_jsonl, read_records, write_jsonl
from distillpipe.runner import run_stage
from distillpipe.stages import stage_named
from distillpipe.stages.generate import RequestBuilder, system_prompt_for

PROMPTS = [
    {"instruction": "Name a colour.", "meta": {"source": "test"}},
    {"instruction": "Translate to French.", "input": "good night"},
    {"instruction": "Name a fruit."},
]


def config_at(tmp_path: Path, **overrides):
    data = small_llamacpp_config(n=2)
    for dotted, value in overrides.items():
        section, key = dotted.split("__")
        data.setdefault(section, {})[key] = value
    return load_config(write_config(tmp_path / "config.yaml", data))


@pytest.mark.parametrize("mode", ["completion", "chat"])
def test_generate_gives_every_record_n_real_responses_in_input_order(tmp_path: Path, mode: str):
    config = config_at(tmp_path, teacher__mode=mode)
    write_jsonl(tmp_path / "in.jsonl", PROMPTS)
    stage = stage_named("generate")
    result = run_stage(stage, config, tmp_path / "in.jsonl", tmp_path / "out.jsonl")
    out = list(read_records(tmp_path / "out.jsonl"))
    assert [r["instruction"] for r in out] == [p["instruction"] for p in PROMPTS]
    assert out[0]["meta"] == {"source": "test"}  # fields the stage does not own pass through
    for record in out:
        assert [r["sample"] for r in record["responses"]] == [0, 1]
        for response in record["responses"]:
            assert response["text"].strip()
            assert response["model"] == "gemma-3-270m-q4_k_m"
            assert response["usage"]["completion_tokens"] > 0
    assert result.records_in == result.records_out == 3
    assert result.stats["teacher"]["teacher_calls"] == 6


def test_a_rerun_is_served_from_the_cache_and_identical(tmp_path: Path):
    config = config_at(tmp_path)
    write_jsonl(tmp_path / "in.jsonl", PROMPTS)
    stage = stage_named("generate")
    run_stage(stage, config, tmp_path / "in.jsonl", tmp_path / "first.jsonl")
    again = run_stage(stage, config, tmp_path / "in.jsonl", tmp_path / "second.jsonl")
    assert again.stats["teacher"]["teacher_calls"] == 0
    assert again.stats["teacher"]["cache_hits"] == 6
    assert (tmp_path / "first.jsonl").read_bytes() == (tmp_path / "second.jsonl").read_bytes()


def test_an_instruction_repeated_in_the_input_goes_to_the_teacher_once(
    fault_server: FaultServer, tmp_path: Path
):
    """The records share an id (ids hash the text) and so the call's cache key: the paid
    API answers it once, every record gets that answer, and dedup names the first line."""
    teacher = {"backend": "openai", "model": "gpt-4o-mini", "base_url": f"{fault_server.url}/v1",
               "api_key": "sk-test", "mode": "completion", "max_retries": 0}  # fmt: skip
    config = parse_config(
        {"name": "t", "seed": 1, "teacher": teacher, "generate": {"n": 1, "max_tokens": 16},
         "filter": [{"type": "dedup"}]},
        ConfigSource("test.yaml", None),
    )  # fmt: skip
    write_jsonl(tmp_path / "in.jsonl", 3 * [{"instruction": "Name a colour."}])
    generate, filter = stage_named("generate"), stage_named("filter")

    result = run_stage(generate, config, tmp_path / "in.jsonl", tmp_path / "out.jsonl")
    assert sum(fault_server.answered.values()) == 1
    out = list(read_records(tmp_path / "out.jsonl"))
    assert len(out) == result.records_out == 3
    assert len({r["id"] for r in out}) == 1
    assert out[0]["responses"] == out[1]["responses"] == out[2]["responses"]
    assert out[0]["responses"][0]["text"].startswith("echo: ")
    stats = result.stats["teacher"]
    assert (stats["calls"], stats["teacher_calls"], stats["duplicate_calls"]) == (3, 1, 2)

    again = run_stage(generate, config, tmp_path / "in.jsonl", tmp_path / "again.jsonl")
    assert sum(fault_server.answered.values()) == 1
    replay = again.stats["teacher"]
    assert replay["cache_hits"] == 1 and replay["duplicate_calls"] == 2

    rejected = tmp_path / "rejected.jsonl"
    run_stage(
        filter, config, tmp_path / "out.jsonl", tmp_path / "kept.jsonl", rejected_path=rejected
    )
    reasons = [r["reject"]["reason"] for r in read_jsonl(rejected)]
    assert reasons == 2 * [f"exact duplicate of line 1 (id {out[0]['id']})"]


def test_completion_prompts_carry_instruction_input_and_stop_sequences(tmp_path: Path):
    config = config_at(tmp_path, generate__system_prompt="cot")
    request = RequestBuilder(config, "completion")({"id": "x", **PROMPTS[1]})
    assert "### Instruction:\nTranslate to French." in request.prompt
    assert "### Input:\ngood night" in request.prompt
    assert request.prompt.endswith("### Response:\n")
    assert request.prompt.startswith("You are a helpful assistant. Think through")
    assert "### Instruction:" in request.params.stop


def test_chat_requests_put_the_system_prompt_first(tmp_path: Path):
    config = config_at(tmp_path, generate__system_prompt="plain")
    request = RequestBuilder(config, "chat")({"id": "x", **PROMPTS[1]})
    assert [m["role"] for m in request.messages] == ["system", "user"]
    assert request.messages[1]["content"] == "Translate to French.\n\ngood night"


def test_system_prompt_choice(tmp_path: Path):
    none = config_at(tmp_path)
    literal = config_at(tmp_path, generate__system_prompt="Answer in one word.")
    orca = config_at(tmp_path, generate__system_prompt="orca")
    record = {"id": "abc", "instruction": "x"}
    assert system_prompt_for(record, none) is None
    assert system_prompt_for(record, literal) == "Answer in one word."
    assert system_prompt_for({**record, "system": "Mine."}, orca) == "Mine."
    drawn = {system_prompt_for({"id": str(i), "instruction": "x"}, orca) for i in range(40)}
    assert len(drawn) > 2  # several Orca messages in use, one per record
    assert system_prompt_for(record, orca) == system_prompt_for(record, orca)


def test_generate_until_samples_the_embedded_model_against_a_reference(tmp_path: Path):
    data = small_llamacpp_config()
    del data["generate"]["n"]
    data["generate"]["until"] = {"filter": "reference", "k": 1, "max_samples": 4, "step": 2}
    data["filter"] = [{"type": "reference"}]
    config = load_config(write_config(tmp_path / "config.yaml", data))
    write_jsonl(tmp_path / "in.jsonl", [
        {"instruction": f"What is {a} + {b}? Reply with the number only.", "reference": str(a + b)}
        for a, b in [(1, 1), (2, 3), (4, 4)]
    ])  # fmt: skip
    stage, rejected_path = stage_named("generate"), tmp_path / "rejected.jsonl"
    result = run_stage(
        stage, config, tmp_path / "in.jsonl", tmp_path / "out.jsonl", rejected_path=rejected_path
    )

    kept = list(read_records(tmp_path / "out.jsonl"))
    rejected = list(read_jsonl(tmp_path / "rejected.jsonl"))
    assert len(kept) + len(rejected) == 3
    drawn = [len(r["responses"]) for r in kept + rejected]
    assert all(n in (2, 4) for n in drawn)
    assert all(len(r["responses"]) == 4 for r in rejected)
    stats = result.stats["until"]
    assert stats["samples"] == sum(drawn) == result.stats["teacher"]["teacher_calls"]
    assert 0.0 <= stats["pass@1"] <= stats["pass@4"] <= 1.0
