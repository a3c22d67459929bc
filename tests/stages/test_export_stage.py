"""The export stage: which rows come out, in which order and split, and what lands on disk."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import yaml
from support import small_llamacpp_config, write_config

from distillpipe.config import load_config
from distillpipe.errors import InputError
from distillpipe.io import read_jsonl, read_records, write_jsonl
from distillpipe.pipeline import run_pipeline
from distillpipe.runner import run_stage
from distillpipe.stages import stage_named
from distillpipe.stages.export import build_export, write_export


def response(text: str, sample: int, logprobs: list | None = None) -> dict:
    value = {"text": text, "model": "teacher-x", "finish_reason": "stop",
             "usage": {"prompt_tokens": 5, "completion_tokens": 2}, "sample": sample}  # fmt: skip
    if logprobs is not None:
        value["logprobs"] = logprobs
    return value


COLOUR = {
    "id": "colour",
    "instruction": "Name a colour.",
    "responses": [
        response(" Red.\n", 0, [[" Red", -0.1, {" Red": -0.1, " Blue": -2.3}], [".", -0.2, {}]]),
        response("Blue", 1),
    ],
    "scores": {"reward": 0.9},
    "selection": {"chosen": 1, "rejected": 0, "by": "reward"},
}
FRENCH = {
    "id": "french",
    "instruction": "Translate to French.",
    "input": "good night",
    "system": "Answer briefly.",
    "responses": [response("bonne nuit", 0)],
}
UNANSWERED = {"id": "unanswered", "instruction": "Say nothing.", "responses": [response(" ", 0)]}


def config_at(tmp_path: Path, **export: object):
    data = {**small_llamacpp_config(), "export": {"shuffle": False, **export}}
    return load_config(write_config(tmp_path / "config.yaml", data))


def rows(tmp_path: Path, records: list[dict], **export: object) -> dict[str, list[dict]]:
    return build_export(records, config_at(tmp_path, **export)).splits


def test_messages_is_the_trl_and_openai_conversation(tmp_path: Path):
    (colour, french) = rows(tmp_path, [COLOUR, FRENCH])["train"]
    assert colour == {"messages": [{"role": "user", "content": "Name a colour."},
                                   {"role": "assistant", "content": "Blue"}]}  # fmt: skip
    assert french == {"messages": [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Translate to French.\n\ngood night"},
        {"role": "assistant", "content": "bonne nuit"},
    ]}  # fmt: skip


def test_sharegpt_alpaca_and_prompt_completion_rows(tmp_path: Path):
    (sharegpt,) = rows(tmp_path, [FRENCH], format="sharegpt")["train"]
    assert sharegpt == {"conversations": [
        {"from": "system", "value": "Answer briefly."},
        {"from": "human", "value": "Translate to French.\n\ngood night"},
        {"from": "gpt", "value": "bonne nuit"},
    ]}  # fmt: skip
    (alpaca,) = rows(tmp_path, [FRENCH], format="alpaca")["train"]
    assert alpaca == {"instruction": "Translate to French.", "input": "good night",
                      "output": "bonne nuit", "system": "Answer briefly."}  # fmt: skip
    (plain,) = rows(tmp_path, [FRENCH], format="prompt-completion", conversational=False)["train"]
    assert plain == {"prompt": "Answer briefly.\n\nTranslate to French.\n\ngood night",
                     "completion": "bonne nuit"}  # fmt: skip
    (chat,) = rows(tmp_path, [FRENCH], format="prompt-completion")["train"]
    assert chat["prompt"][-1] == {"role": "user", "content": "Translate to French.\n\ngood night"}
    assert chat["completion"] == [{"role": "assistant", "content": "bonne nuit"}]


def test_the_system_prompt_can_be_left_out(tmp_path: Path):
    (row,) = rows(tmp_path, [FRENCH], system_prompt=False)["train"]
    assert [m["role"] for m in row["messages"]] == ["user", "assistant"]


def test_the_chosen_sample_is_exported_else_the_first_or_all_of_them(tmp_path: Path):
    chosen = rows(tmp_path, [COLOUR], format="alpaca")["train"]
    assert [r["output"] for r in chosen] == ["Blue"]
    no_selection = {k: v for k, v in COLOUR.items() if k != "selection"}
    assert [r["output"] for r in rows(tmp_path, [no_selection], format="alpaca")["train"]] == [
        "Red."
    ]
    every = rows(tmp_path, [COLOUR], format="alpaca", responses="all")["train"]
    assert [r["output"] for r in every] == ["Red.", "Blue"]


SOLVED = {
    "id": "solved",
    "instruction": "What is 2 + 2?",
    "reference": "2 + 2 = 4. #### 4",
    "responses": [response("5", 0), response("The answer is 4.", 1)],
    "scores": {"reference": {"correct": [False, True], "answers": ["5", "4"]}},
    "selection": {"chosen": 1, "rejected": 0, "by": "reference"},
}
UNSOLVED = {
    "id": "unsolved",
    "instruction": "What is 3 + 4?",
    "reference": {"solution": "3 + 4 = 7. #### 7", "answer": "7"},
    "responses": [response("8", 0), response("6", 1)],
    "sampling": {"filter": "reference", "drawn": 2, "passed": []},
}


def test_include_reference_adds_the_ground_truth_as_an_extra_row(tmp_path: Path):
    exported = build_export(
        [SOLVED, UNSOLVED, COLOUR],
        config_at(tmp_path, format="alpaca", include_reference=True),
    )
    outputs = [(r["instruction"], r["output"]) for r in exported.splits["train"]]
    assert outputs == [
        ("What is 2 + 2?", "The answer is 4."),
        ("What is 2 + 2?", "2 + 2 = 4. #### 4"),
        ("What is 3 + 4?", "8"),  # extra: the teacher's pick stays, verified or not
        ("What is 3 + 4?", "3 + 4 = 7. #### 7"),  # an object gives its solution
        ("Name a colour.", "Blue"),  # no reference: the teacher's rows alone
    ]
    assert (
        exported.stats(config_at(tmp_path, include_reference=True).export_section)["reference_rows"]
        == 2
    )


def test_include_reference_as_fallback_replaces_only_samples_that_failed(tmp_path: Path):
    unanswered = {**UNANSWERED, "reference": "Nothing."}
    checked = {**COLOUR, "reference": "Red", "scores": {"check": {"passed": [False, False]}}}
    exported = build_export(
        [SOLVED, UNSOLVED, unanswered, checked, FRENCH],
        config_at(tmp_path, format="alpaca", include_reference=True, reference_as="fallback"),
    )
    outputs = [r["output"] for r in exported.splits["train"]]
    assert outputs == ["The answer is 4.", "3 + 4 = 7. #### 7", "Nothing.", "Red", "bonne nuit"]
    assert exported.reference_rows == 3
    assert exported.skipped == {}


def test_include_reference_reads_the_configured_field_and_is_sft_only(tmp_path: Path):
    record = {**FRENCH, "meta": {"output": "bonne nuit !"}}
    config = config_at(tmp_path, format="alpaca", include_reference=True,
                       reference_field=["reference", "meta.output"])  # fmt: skip
    assert [r["output"] for r in build_export([record], config).splits["train"]] == [
        "bonne nuit",
        "bonne nuit !",
    ]
    with pytest.raises(Exception, match=r"config.yaml:\d+: export: .*include_reference adds SFT"):
        config_at(tmp_path, format="dpo", include_reference=True)


def test_the_reference_row_has_a_null_logprobs_row_beside_it(tmp_path: Path):
    exported = build_export(
        [{**COLOUR, "reference": "Green"}],
        config_at(tmp_path, include_reference=True, logprobs=True),
    )
    assert [row["sample"] for row in exported.sidecars["train"]] == [1, None]
    assert exported.sidecars["train"][1]["tokens"] is None


def test_records_without_a_response_are_counted_not_exported(tmp_path: Path):
    exported = build_export([COLOUR, UNANSWERED], config_at(tmp_path))
    assert len(exported.splits["train"]) == 1
    assert exported.skipped == {"no response": 1}


def test_dpo_pairs_come_only_from_a_real_preference_signal(tmp_path: Path):
    no_rejected = {**COLOUR, "id": "tie", "selection": {"chosen": 0, "rejected": None, "by": "x"}}
    generated_only = {k: v for k, v in FRENCH.items()}
    exported = build_export(
        [COLOUR, no_rejected, generated_only], config_at(tmp_path, format="dpo")
    )
    assert exported.splits["train"] == [{
        "prompt": [{"role": "user", "content": "Name a colour."}],
        "chosen": [{"role": "assistant", "content": "Blue"}],
        "rejected": [{"role": "assistant", "content": "Red."}],
    }]  # fmt: skip
    assert exported.skipped == {"no preference signal": 2}
    plain = build_export([COLOUR], config_at(tmp_path, format="dpo", conversational=False))
    assert plain.splits["train"] == [
        {"prompt": "Name a colour.", "chosen": "Blue", "rejected": "Red."}
    ]


def many(count: int) -> list[dict]:
    return [
        {"id": f"r{i:03d}", "instruction": f"Question {i}?", "responses": [response(f"A{i}", 0)]}
        for i in range(count)
    ]


def answers(split: list[dict]) -> list[str]:
    return [row["messages"][-1]["content"] for row in split]


def test_shuffle_is_seeded_and_independent_of_input_order(tmp_path: Path):
    records = many(30)
    config = config_at(tmp_path, shuffle=True)
    first = answers(build_export(records, config).splits["train"])
    backwards = answers(build_export(records[::-1], config).splits["train"])
    assert first == backwards != [f"A{i}" for i in range(30)]
    reseeded = config.model_copy(update={"seed": config.seed + 1})
    assert answers(build_export(records, reseeded).splits["train"]) != first
    assert sorted(first) == sorted(f"A{i}" for i in range(30))


def test_validation_split_by_fraction_or_count_and_max_records(tmp_path: Path):
    by_fraction = rows(tmp_path, many(20), validation=0.25)
    assert (len(by_fraction["train"]), len(by_fraction["validation"])) == (15, 5)
    by_count = rows(tmp_path, many(20), validation=3)
    assert (len(by_count["train"]), len(by_count["validation"])) == (17, 3)
    assert answers(by_count["train"]) + answers(by_count["validation"]) == answers(
        rows(tmp_path, many(20))["train"]
    )
    capped = build_export(many(20), config_at(tmp_path, max_records=4))
    assert len(capped.splits["train"]) == 4
    assert capped.skipped == {"over max_records": 16}


def test_samples_of_one_record_stay_in_one_split(tmp_path: Path):
    records = [{**r, "responses": [response("x", 0), response("y", 1)]} for r in many(10)]
    split = rows(tmp_path, records, responses="all", validation=0.5, shuffle=True)
    prompts = {s: {row["messages"][0]["content"] for row in split[s]} for s in split}
    assert len(split["train"]) == len(split["validation"]) == 10
    assert not prompts["train"] & prompts["validation"]


def test_a_bad_validation_value_names_the_key(tmp_path: Path):
    with pytest.raises(Exception, match=r"config.yaml:\d+: export.validation"):
        config_at(tmp_path, validation=2.5)


def test_logprobs_sidecar_is_line_aligned_with_the_rows(tmp_path: Path):
    config = config_at(tmp_path, logprobs=True, responses="all")
    exported = build_export([COLOUR, FRENCH], config)
    write_export(exported, config, tmp_path / "out", None)
    train = list(read_jsonl(tmp_path / "out" / "train.jsonl"))
    sidecar = list(read_jsonl(tmp_path / "out" / "train.logprobs.jsonl"))
    assert len(train) == len(sidecar) == 3
    assert sidecar[0] == {
        "id": "colour", "sample": 0, "tokens": [" Red", "."], "logprobs": [-0.1, -0.2],
        "top_logprobs": [{" Red": -0.1, " Blue": -2.3}, {}], "text_offset": 1,
    }  # fmt: skip
    joined = "".join(sidecar[0]["tokens"])[sidecar[0]["text_offset"] :]
    assert joined == train[0]["messages"][-1]["content"]
    assert sidecar[1]["tokens"] is None and sidecar[2]["id"] == "french"


def full_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DP_TEST_API_KEY", "sk-export-sentinel")
    data = {
        "name": "exported",
        "seed": 11,
        "teacher": {"backend": "openai", "model": "teacher-x", "base_url": "http://127.0.0.1:9/v1",
                    "api_key": "${DP_TEST_API_KEY}"},
        "export": {"validation": 0.2, "logprobs": True, "parquet": True, "save_to_disk": True},
    }  # fmt: skip
    return load_config(write_config(tmp_path / "config.yaml", data))


def tree(directory: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(directory)): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def test_the_export_directory_is_a_pure_function_of_input_and_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    config = full_config(tmp_path, monkeypatch)
    records = [COLOUR, FRENCH, *many(12)]
    write_export(build_export(records, config), config, tmp_path / "a", None)
    write_export(build_export(records, config), config, tmp_path / "b", None)
    first, second = tree(tmp_path / "a"), tree(tmp_path / "b")
    assert first == second
    assert {"train.jsonl", "validation.jsonl", "train.logprobs.jsonl", "README.md", "export.json",
            "data/train-00000-of-00001.parquet", "hf/dataset_dict.json"} <= set(first)  # fmt: skip
    assert all(b"sk-export-sentinel" not in data for data in first.values())


def test_parquet_and_save_to_disk_hold_the_same_rows(tmp_path: Path, monkeypatch):
    from datasets import load_from_disk

    config = full_config(tmp_path, monkeypatch)
    write_export(build_export([COLOUR, FRENCH, *many(8)], config), config, tmp_path / "out", None)
    jsonl = list(read_jsonl(tmp_path / "out" / "train.jsonl"))
    assert load_from_disk(str(tmp_path / "out" / "hf"))["train"].to_list() == jsonl
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "out" / "data" / "train-00000-of-00001.parquet")
    assert table.to_pylist() == jsonl


def test_the_dataset_card_names_teacher_counts_terms_and_redacted_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    config = full_config(tmp_path, monkeypatch)
    manifest = {"stages": {
        "generate": {"records_in": 20, "records_out": 20, "stats": {}},
        "filter": {"records_in": 20, "records_out": 12, "stats": {
            "rejected": {"length": 8},
            "filters": {"length": {"seen": 20, "kept": 12, "rejected": 8}}}},
    }}  # fmt: skip
    exported = build_export([COLOUR, FRENCH, UNANSWERED, *many(8)], config)
    write_export(exported, config, tmp_path / "out", manifest)
    card = (tmp_path / "out" / "README.md").read_text()
    front_matter = yaml.safe_load(card.split("---")[1])
    assert {"split": "train", "path": "data/train-00000-of-00001.parquet"} in front_matter[
        "configs"
    ][0]["data_files"]
    assert "**teacher-x** (backend `openai`)" in card
    assert "rows exported: 10 (train 8, validation 2)" in card
    assert "records skipped, no response: 1" in card
    assert "| filter | 20 | 12 | 8 |" in card
    assert "| length | 20 | 12 | 8 |" in card
    assert "terms of use" in card
    assert "api_key: '***'" in card and "sk-export-sentinel" not in card


def test_only_an_earlier_export_or_an_empty_folder_is_replaced(tmp_path: Path):
    config = config_at(tmp_path)
    exported = build_export([COLOUR], config)
    write_export(exported, config, tmp_path / "out", None)
    write_export(exported, config, tmp_path / "out", None)  # an earlier export: replaced
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="mine: exists and is not a distillpipe export"):
        write_export(exported, config, tmp_path / "mine", None)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    (tmp_path / "out" / "notes.txt").write_text("added by hand")
    with pytest.raises(InputError, match="out: exists and is not a distillpipe export"):
        write_export(exported, config, tmp_path / "out", None)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_the_stage_yields_the_rows_and_writes_the_directory_beside_its_output(tmp_path: Path):
    config = config_at(tmp_path, validation=1)
    write_jsonl(tmp_path / "in.jsonl", [COLOUR, FRENCH, UNANSWERED])
    result = run_stage(
        stage_named("export"), config, tmp_path / "in.jsonl", tmp_path / "export.jsonl"
    )
    assert result.stats["export"] == {"format": "messages", "records": 3,
                                      "rows": {"train": 1, "validation": 1},
                                      "skipped": {"no response": 1}}  # fmt: skip
    assert (tmp_path / "export.jsonl").read_bytes() == (
        (tmp_path / "export" / "train.jsonl").read_bytes()
        + (tmp_path / "export" / "validation.jsonl").read_bytes()
    )


def test_cli_export_with_a_format_override_and_stdout(tmp_path: Path, cli_env: dict[str, str]):
    config = write_config(tmp_path / "config.yaml", small_llamacpp_config())
    write_jsonl(tmp_path / "in.jsonl", [COLOUR, FRENCH])
    done = subprocess.run(
        [sys.executable, "-m", "distillpipe", "export", "-c", str(config),
         "-i", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out"), "--format", "sharegpt"],
        capture_output=True, env=cli_env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    assert "export: 2 records → train 2" in done.stderr.decode()
    first = orjson.loads((tmp_path / "out" / "train.jsonl").read_bytes().splitlines()[0])
    assert set(first) == {"conversations"}
    piped = subprocess.run(
        [sys.executable, "-m", "distillpipe", "export", "-c", str(config), "-i", "-", "-o", "-",
         "-f", "dpo", "-q"],
        input=(tmp_path / "in.jsonl").read_bytes(), capture_output=True, env=cli_env, timeout=300,
    )  # fmt: skip
    assert piped.returncode == 0, piped.stderr.decode()
    assert [set(orjson.loads(line)) for line in piped.stdout.splitlines()] == [
        {"prompt", "chosen", "rejected"}
    ]


@pytest.mark.slow
def test_export_of_real_generate_output_in_a_run(tmp_path: Path):
    data = {**small_llamacpp_config(n=2), "export": {"format": "messages", "responses": "all"}}
    config = load_config(write_config(tmp_path / "config.yaml", data))
    write_jsonl(tmp_path / "in.jsonl", [{"instruction": "Name a colour."},
                                        {"instruction": "Name a fruit."}])  # fmt: skip
    results = run_pipeline(config, tmp_path / "run", tmp_path / "in.jsonl")
    assert [result.name for result, _ in results] == ["generate", "export"]
    generated = list(read_records(tmp_path / "run" / "generate.jsonl"))
    exported = list(read_jsonl(tmp_path / "run" / "export" / "train.jsonl"))
    texts = {r["text"].strip() for record in generated for r in record["responses"]} - {""}
    assert {row["messages"][-1]["content"] for row in exported} == texts
    manifest = orjson.loads((tmp_path / "run" / "manifest.json").read_bytes())
    assert manifest["stages"]["export"]["stats"]["export"]["rows"] == {"train": len(exported)}
    assert "| generate | 2 | 2 | 0 |" in (tmp_path / "run" / "export" / "README.md").read_text()


@pytest.mark.slow
def test_logprobs_of_the_real_teacher_line_up_with_the_exported_text(tmp_path: Path):
    data = small_llamacpp_config(max_tokens=6, top_logprobs=2)
    data["teacher"]["logits_all"] = True
    data["export"] = {"logprobs": True}
    config = load_config(write_config(tmp_path / "config.yaml", data))
    write_jsonl(tmp_path / "in.jsonl", [{"instruction": "Name a colour."}])
    run_pipeline(config, tmp_path / "run", tmp_path / "in.jsonl")
    (row,) = read_jsonl(tmp_path / "run" / "export" / "train.jsonl")
    (sidecar,) = read_jsonl(tmp_path / "run" / "export" / "train.logprobs.jsonl")
    assert len(sidecar["tokens"]) == len(sidecar["logprobs"]) == len(sidecar["top_logprobs"]) == 6
    text = "".join(sidecar["tokens"])[sidecar["text_offset"] :]
    assert text.startswith(row["messages"][-1]["content"])
    rows = zip(sidecar["tokens"], sidecar["logprobs"], sidecar["top_logprobs"], strict=True)
    for token, logprob, top in rows:
        assert logprob <= 0 and len(top) >= 2
        assert top.get(token, logprob) == pytest.approx(logprob)  # the sampled token's own entry


def test_a_failed_push_to_hub_is_one_line_and_keeps_the_files(
    tmp_path: Path, cli_env: dict[str, str]
):
    data = {**small_llamacpp_config(), "export": {"push_to_hub": "someone/dataset"}}
    config = write_config(tmp_path / "config.yaml", data)
    write_jsonl(tmp_path / "in.jsonl", [COLOUR])
    done = subprocess.run(
        [sys.executable, "-m", "distillpipe", "export", "-c", str(config),
         "-i", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out")],
        capture_output=True, env={**cli_env, "HF_HUB_OFFLINE": "1", "HF_TOKEN": ""}, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1
    (error,) = done.stderr.decode().strip().splitlines()
    assert error.startswith("error: export.push_to_hub someone/dataset: ")
    assert (tmp_path / "out" / "train.jsonl").is_file()
