"""The seed stage: seed tasks in, Self-Instruct's new instructions out, on the real gemma."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from killing import resume_and_compare
from support import write_config

from distillpipe.config import SelfInstructConfig, load_config
from distillpipe.instructions import Task
from distillpipe.io import read_jsonl, read_records, write_jsonl
from distillpipe.runner import run_stage
from distillpipe.stages import stage_named
from distillpipe.stages.base import StageContext
from distillpipe.stages.seed import Pool, TaskListPrompter, shown_tasks

SEEDS = [
    {"instruction": "Give three tips for staying healthy."},
    {"instruction": "Translate the sentence into French.", "input": "Good morning."},
    {"instruction": "Write a haiku about autumn leaves."},
    {"instruction": "Explain why the sky is blue to a ten-year-old."},
    {"instruction": "Suggest a name for a coffee shop run by cats."},
    {"instruction": "Summarize the plot of Romeo and Juliet in two sentences."},
    {"instruction": "Classify the review as positive or negative.", "input": "Cold food."},
    {"instruction": "List five animals that live in the desert."},
]


def seed_config(tmp_path: Path, mode: str = "completion", **self_instruct: object):
    data = {
        "name": "test",
        "seed": 7,
        "teacher": {"backend": "llamacpp", "mode": mode, "n_ctx": 1024},
        "self_instruct": {
            "target": 4,
            "requests_per_round": 2,
            "max_rounds": 2,
            "max_tokens": 48,
            **self_instruct,
        },
    }
    return load_config(write_config(tmp_path / "config.yaml", data))


def records(count: int) -> list[dict]:
    return [{"id": str(i), "instruction": f"Task number {i}."} for i in range(count)]


def test_a_request_shows_seed_and_machine_tasks_and_ends_at_the_next_number():
    section = SelfInstructConfig()
    request = TaskListPrompter(section, "completion")("r", records(8))
    assert request.prompt.endswith("8. Task number 7.\n9.")
    assert request.params.stop == ("\n\n", "\n16.")
    assert (request.params.temperature, request.params.top_p) == (0.7, 0.5)
    assert request.params.presence_penalty == 2.0
    chat = TaskListPrompter(section, "chat")("r", records(8))
    assert "Continue the list with tasks 9 to 15" in chat.messages[0]["content"]
    assert chat.params.stop == ()


def test_shown_tasks_take_two_machine_tasks_fill_with_seeds_and_repeat_for_the_same_draw():
    section = SelfInstructConfig()
    seeds, machine = records(20), [{"id": f"m{i}", "instruction": "x"} for i in range(5)]
    shown = shown_tasks(seeds, machine, section, random.Random("7:0:0"))
    assert len(shown) == 8 and sum(r["id"].startswith("m") for r in shown) == 2
    assert shown == shown_tasks(seeds, machine, section, random.Random("7:0:0"))
    assert len(shown_tasks(seeds, [], section, random.Random(1))) == 8  # seeds fill in
    assert len(shown_tasks(seeds[:3], [], section, random.Random(1))) == 3


def test_post_filters_reject_with_their_reason_and_count(tmp_path: Path):
    config = seed_config(tmp_path)
    ctx = StageContext(config)
    pool = Pool(config.self_instruct, ctx)
    pool.add("Write a haiku about autumn leaves.")
    origin = {"stage": "seed", "round": 0}
    kept = pool.screen(Task("Describe the rules of chess to a beginner."), origin)
    assert kept["origin"] == origin
    assert kept["meta"]["nearest"]["instruction"] == "Write a haiku about autumn leaves."
    assert pool.screen(Task("write a haiku  about autumn leaves."), origin) is None
    assert pool.screen(Task("Write a haiku about the autumn leaves."), origin) is None
    assert pool.screen(Task("Draw a picture of a cat."), origin) is None
    assert pool.screen(Task("Hi there."), origin) is None
    assert pool.counts["kept"] == 1 and pool.counts["candidates"] == 5
    assert ctx.stats["rejected"] == {"duplicate": 1, "rouge_l": 1, "blacklist": 1, "length": 1}


def test_with_no_target_the_stage_only_loads_the_seeds(tmp_path: Path):
    config = seed_config(tmp_path, target=0)
    (tmp_path / "seeds.csv").write_text("instruction,input\nName a river.,\nAdd them.,1 2\n")
    result = run_stage(stage_named("seed"), config, tmp_path / "seeds.csv", tmp_path / "out.jsonl")
    out = list(read_records(tmp_path / "out.jsonl"))
    assert [(r["instruction"], r.get("input")) for r in out] == [
        ("Name a river.", None),
        ("Add them.", "1 2"),
    ]
    assert "teacher" not in result.stats  # no model was loaded
    assert result.stats["self_instruct"]["requests"] == 0


@pytest.mark.slow
def test_gemma_bootstraps_new_instructions_and_a_rerun_is_identical(tmp_path: Path):
    config = seed_config(tmp_path)
    write_jsonl(tmp_path / "seeds.jsonl", SEEDS)
    stage = stage_named("seed")
    result = run_stage(
        stage,
        config,
        tmp_path / "seeds.jsonl",
        tmp_path / "out.jsonl",
        rejected_path=tmp_path / "rejected.jsonl",
    )
    out = list(read_records(tmp_path / "out.jsonl"))
    assert [r["instruction"] for r in out[: len(SEEDS)]] == [s["instruction"] for s in SEEDS]
    new = out[len(SEEDS) :]
    assert 1 <= len(new) <= 4
    seed_texts = {s["instruction"].lower() for s in SEEDS}
    for record in new:
        assert record["origin"]["stage"] == "seed"
        assert record["instruction"].lower() not in seed_texts
        assert len(record["instruction"].split()) >= 4
        assert record["meta"]["nearest"]["rouge_l"] < 0.7
    stats = result.stats["self_instruct"]
    assert stats["generated"] == len(new) and stats["requests"] == result.stats["teacher"]["calls"]
    assert stats["filters"]["kept"] == len(new)
    rejected = [row for row in read_jsonl(tmp_path / "rejected.jsonl")]
    assert sum(result.stats.get("rejected", {}).values()) == len(rejected)
    for row in rejected:
        assert row["reject"]["filter"] in stats["filters"] and row["reject"]["reason"]

    again = run_stage(stage, config, tmp_path / "seeds.jsonl", tmp_path / "again.jsonl")
    assert again.stats["teacher"]["teacher_calls"] == 0
    assert (tmp_path / "again.jsonl").read_bytes() == (tmp_path / "out.jsonl").read_bytes()


@pytest.mark.slow
def test_chat_mode_asks_for_the_rest_of_the_list_in_one_user_turn(tmp_path: Path):
    config = seed_config(
        tmp_path, mode="chat", target=3, requests_per_round=1, max_rounds=1, max_tokens=64
    )
    write_jsonl(tmp_path / "seeds.jsonl", SEEDS)
    result = run_stage(stage_named("seed"), config, tmp_path / "seeds.jsonl", tmp_path / "o.jsonl")
    stats = result.stats["self_instruct"]
    assert result.stats["teacher"]["teacher_calls"] == stats["requests"] == 1
    out = [orjson.loads(line) for line in (tmp_path / "o.jsonl").read_bytes().splitlines()]
    assert len(out) == len(SEEDS) + stats["generated"]
    assert stats["filters"]["candidates"] >= 1  # the chat answer held at least one list item


@pytest.mark.slow
def test_a_killed_seed_run_resumes_to_the_clean_output_without_asking_again(tmp_path: Path):
    write_config(
        tmp_path / "config.yaml",
        {
            "name": "test",
            "seed": 3,
            "teacher": {"backend": "llamacpp", "mode": "completion", "n_ctx": 1024},
            "self_instruct": {
                "target": 50,
                "requests_per_round": 1,
                "max_rounds": 2,
                "max_tokens": 24,
            },
        },
    )
    write_jsonl(tmp_path / "seeds.jsonl", SEEDS)

    def args_for(name: str) -> list[str]:
        return ["seed", "-c", str(tmp_path / "config.yaml"), "-i", str(tmp_path / "seeds.jsonl"),
                "-o", str(tmp_path / f"{name}.jsonl")]  # fmt: skip

    resume_and_compare(tmp_path, args_for, total_calls_at_least=2)


def test_the_cli_reads_the_configs_input_by_default_and_names_a_bad_seed_line(
    tmp_path: Path, cli_env: dict
):
    config = {"name": "t", "input": "seeds.txt", "self_instruct": {"target": 0}}
    write_config(tmp_path / "config.yaml", config)
    (tmp_path / "seeds.txt").write_text("Name a river.\nWrite a limerick.\n")
    command = [
        sys.executable,
        "-m",
        "distillpipe",
        "seed",
        "-q",
        "-c",
        str(tmp_path / "config.yaml"),
    ]
    done = subprocess.run([*command, "-o", "-"], env=cli_env, capture_output=True, check=True)
    assert [orjson.loads(line)["instruction"] for line in done.stdout.splitlines()] == [
        "Name a river.",
        "Write a limerick.",
    ]
    (tmp_path / "bad.jsonl").write_text('{"instruction": "ok"}\n{"instances": []}\n')
    failed = subprocess.run(
        [*command, "-i", str(tmp_path / "bad.jsonl"), "-o", str(tmp_path / "out.jsonl")],
        env=cli_env,
        capture_output=True,
        text=True,
    )
    assert failed.returncode == 1
    assert f"{tmp_path / 'bad.jsonl'}:2: seed has no 'instruction' text" in failed.stderr
    assert not (tmp_path / "out.jsonl").exists() and not (tmp_path / "out.rejected.jsonl").exists()
