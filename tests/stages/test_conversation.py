"""generate's conversation mode: a simulated user and the teacher take turns, each turn cached."""

from __future__ import annotations

from pathlib import Path

import pytest
from killing import resume_and_compare
from support import small_llamacpp_config, write_config

from distillpipe.config import load_config
from distillpipe.errors import ConfigError
from distillpipe.io import read_records, write_jsonl
from distillpipe.prompts import PACKAGED
from distillpipe.runner import run_stage
from distillpipe.stages import stage_named
from distillpipe.stages.conversation import (
    Conversation,
    TurnPrompter,
    cleaned_user_turn,
    persona_of,
)
from distillpipe.stages.export import build_export

PERSONA = "a beekeeper who writes short poems"
RECORD = {"id": "bees", "instruction": "Why do bees make honey?", "origin": {"stage": "input"}}


def conversation_config(tmp_path: Path, turns: int = 3, **conversation: object):
    data = small_llamacpp_config(max_tokens=4, temperature=0.8)
    data["generate"]["conversation"] = {
        "turns": turns, "user_sampling": {"max_tokens": 4}, **conversation,
    }  # fmt: skip
    data["export"] = {"format": "messages", "shuffle": False}
    return data


def test_a_three_turn_conversation_on_gemma_is_cached_turn_by_turn_and_exported(tmp_path: Path):
    config = load_config(write_config(tmp_path / "config.yaml", conversation_config(tmp_path)))
    write_jsonl(
        tmp_path / "in.jsonl", [{**RECORD, "origin": {"stage": "input", "persona": PERSONA}}]
    )
    stage = stage_named("generate")
    first = run_stage(stage, config, tmp_path / "in.jsonl", tmp_path / "first.jsonl")
    (record,) = read_records(tmp_path / "first.jsonl")
    roles = [m["role"] for m in record["messages"]]
    assert roles == ["user", "assistant"] * 3
    assert record["messages"][0]["content"] == RECORD["instruction"]
    assert all(m["content"] for m in record["messages"])
    users = record["conversation"]["users"]
    assert [u["source"] for u in users] == ["input", "simulator", "simulator"]
    assert all(u["move"] in PACKAGED.lines("conversation/moves.txt") for u in users[1:])
    assistant = record["conversation"]["assistant"]
    assert len(assistant) == 3 and all(a["model"] == "gemma-3-270m-q4_k_m" for a in assistant)
    assert first.stats["teacher"]["teacher_calls"] == 5  # 3 answers, 2 simulated user turns
    for turn in [*assistant, *users[1:]]:
        provenance = turn["provenance"]
        assert provenance["backend"] == "llamacpp" and provenance["time"]
        assert provenance["params"]["max_tokens"] == 4 and "seed" in provenance["params"]
    assert users[1]["provenance"]["template"].startswith("sha256:")

    again = run_stage(stage, config, tmp_path / "in.jsonl", tmp_path / "second.jsonl")
    assert again.stats["teacher"]["teacher_calls"] == 0
    assert again.stats["teacher"]["cache_hits"] == 5
    assert (tmp_path / "first.jsonl").read_bytes() == (tmp_path / "second.jsonl").read_bytes()

    for format, column in (("messages", "messages"), ("sharegpt", "conversations")):
        config.export.format = format
        (row,) = build_export(read_records(tmp_path / "first.jsonl"), config).rows()
        assert len(row[column]) == 6
    assert row["conversations"][1] == {"from": "gpt", "value": record["messages"][1]["content"]}


@pytest.mark.slow
def test_a_killed_conversation_run_resumes_without_asking_finished_turns(tmp_path: Path):
    data = conversation_config(tmp_path)
    write_config(tmp_path / "config.yaml", data)
    write_jsonl(tmp_path / "in.jsonl", [RECORD])

    def args_for(name: str) -> list[str]:
        return ["generate", "-c", str(tmp_path / "config.yaml"), "-i", str(tmp_path / "in.jsonl"),
                "-o", str(tmp_path / f"{name}.jsonl")]  # fmt: skip

    # killed once a turn is cached: the resumed run asks the other turns of the
    # conversation (5 in all) and no finished one again
    resume_and_compare(tmp_path, args_for, total_calls_at_least=5)


def test_magpie_continues_a_conversation_from_the_templates_pre_query(
    tmp_path: Path, gemma_with_chat_template: Path
):
    data = conversation_config(tmp_path, turns=2, user="magpie")
    data["teacher"]["model_path"] = str(gemma_with_chat_template)
    config = load_config(write_config(tmp_path / "config.yaml", data))
    write_jsonl(tmp_path / "in.jsonl", [RECORD])
    result = run_stage(stage_named("generate"), config, tmp_path / "in.jsonl", tmp_path / "o.jsonl")
    (record,) = read_records(tmp_path / "o.jsonl")
    assert [u["source"] for u in record["conversation"]["users"]] == ["input", "magpie"]
    assert [m["role"] for m in record["messages"]] == ["user", "assistant"] * 2
    assert result.stats["teacher"]["teacher_calls"] == 3

    prompter = TurnPrompter(config, "completion", PACKAGED)
    talk = Conversation(RECORD, None, record["messages"][:2])
    request, _ = prompter.user(talk, 1)
    assert request.prompt == (
        f"<start_of_turn>user\n{RECORD['instruction']}<end_of_turn>\n<start_of_turn>model\n"
        f"{record['messages'][1]['content']}<end_of_turn>\n<start_of_turn>user\n"
    )
    assert "<end_of_turn>" in request.params.stop
    answer = prompter.assistant(Conversation(RECORD, None, record["messages"][:3]), 1)
    assert answer.prompt.endswith("<end_of_turn>\n<start_of_turn>model\n")


def prompter_for(tmp_path: Path, mode: str) -> TurnPrompter:
    data = conversation_config(tmp_path)
    data["teacher"]["mode"] = mode
    return TurnPrompter(load_config(write_config(tmp_path / "c.yaml", data)), mode, PACKAGED)


HISTORY = [
    {"role": "user", "content": "Why do bees make honey?"},
    {"role": "assistant", "content": "To eat in winter."},
]


@pytest.mark.parametrize("mode", ["chat", "completion"])
def test_the_simulated_user_is_told_its_persona_and_its_move(tmp_path: Path, mode: str):
    prompter = prompter_for(tmp_path, mode)
    record = {**RECORD, "meta": {"persona": {"name": "Bea", "description": PERSONA}}}
    request, source = prompter.user(Conversation(record, "Be kind.", list(HISTORY)), 1)
    text = request.messages[0]["content"] if mode == "chat" else request.prompt
    assert PERSONA in text and source["move"] in text
    assert "To eat in winter." in text
    assert "Be kind." not in text  # the system prompt is the assistant's, not the user's
    if mode == "completion":
        assert request.prompt.endswith("User:") and "Assistant:" in request.params.stop
    assert source == {"source": "simulator", "move": prompter.move(record, 1)}


def test_the_assistant_sees_the_system_prompt_and_every_turn(tmp_path: Path):
    chat = prompter_for(tmp_path, "chat").assistant(Conversation(RECORD, "Be kind.", HISTORY), 1)
    assert chat.messages == ({"role": "system", "content": "Be kind."}, *HISTORY)
    completion = prompter_for(tmp_path, "completion")
    prompt = completion.assistant(Conversation(RECORD, "Be kind.", HISTORY), 1).prompt
    assert prompt.startswith("Be kind.") and prompt.endswith(
        "Assistant: To eat in winter.\n\nAssistant:"
    )


def test_moves_are_drawn_from_the_seed_and_the_record(tmp_path: Path):
    prompter = prompter_for(tmp_path, "chat")
    draws = {prompter.move({"id": f"r{i}"}, turn) for i in range(12) for turn in (1, 2)}
    assert draws == set(PACKAGED.lines("conversation/moves.txt"))
    assert prompter.move({"id": "r1"}, 1) == prompter_for(tmp_path, "chat").move({"id": "r1"}, 1)


def test_a_persona_is_read_from_origin_then_meta():
    assert persona_of({"origin": {"persona": " a chef "}, "meta": {"persona": "x"}}) == "a chef"
    assert persona_of({"meta": {"persona": {"persona": "a pilot"}}}) == "a pilot"
    assert persona_of({"meta": {"persona": {"age": 9}}}) == '{"age": 9}'
    assert persona_of({"origin": {"stage": "seed"}}) == ""


def test_a_user_label_the_model_echoes_is_dropped():
    assert cleaned_user_turn("  User: And in spring?") == "And in spring?"
    assert cleaned_user_turn("**User:** Why?") == "Why?"
    assert cleaned_user_turn("Users: are people") == "Users: are people"


@pytest.mark.parametrize("key, value", [("n", 2), ("max_tokens", [4, 8])])
def test_conversation_mode_answers_each_turn_once(tmp_path: Path, key: str, value: object):
    data = conversation_config(tmp_path)
    data["generate"][key] = value
    with pytest.raises(ConfigError, match=r"generate: .*n: 1, no until and one max_tokens"):
        load_config(write_config(tmp_path / "c.yaml", data))


def test_magpie_turns_need_a_teacher_that_takes_raw_prompts(tmp_path: Path):
    data = conversation_config(tmp_path, user="magpie")
    data["teacher"]["mode"] = "chat"
    with pytest.raises(ConfigError, match=r"c.yaml:\d+: generate.conversation.user: Magpie"):
        load_config(write_config(tmp_path / "c.yaml", data))


def test_the_conversation_section_is_in_the_stage_hash(tmp_path: Path):
    from distillpipe.inputs import config_hash

    stage = stage_named("generate")
    one = load_config(write_config(tmp_path / "a.yaml", conversation_config(tmp_path, turns=2)))
    two = load_config(write_config(tmp_path / "b.yaml", conversation_config(tmp_path, turns=3)))
    assert config_hash(stage, one) != config_hash(stage, two)
    assert "conversation" in PACKAGED.path("conversation/moves.txt").parts
    assert "conversation" in stage.prompt_folders
