"""The evolve stage: Evol-Instruct rewrites with lineage and elimination, on the real gemma."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from killing import resume_and_compare
from support import write_config

from distillpipe.config import EVOLVE_OPERATORS, EliminationConfig, EvolveConfig, load_config
from distillpipe.io import read_jsonl, read_records, write_jsonl
from distillpipe.runner import run_stage
from distillpipe.stages import stage_named
from distillpipe.stages.evolve import Elimination, EvolvePrompter, _kept, choose_operator
from distillpipe.teachers.base import Completion

RECORDS = [
    {"instruction": "Give three tips for staying healthy.", "meta": {"source": "test"}},
    {"instruction": "Write a haiku about autumn leaves."},
]
PARENT = {"id": "p", "instruction": "Write a haiku about autumn leaves."}


def evolve_config(tmp_path: Path, **evolve: object):
    data = {
        "name": "test",
        "seed": 7,
        "teacher": {"backend": "llamacpp", "mode": "completion", "n_ctx": 1024},
        "evolve": {"rounds": 2, "max_tokens": 40, **evolve},
    }
    return load_config(write_config(tmp_path / "config.yaml", data))


def said(text: str, finish_reason: str = "stop") -> Completion:
    return Completion(text=text, model="m", finish_reason=finish_reason)


def test_the_operator_is_drawn_from_the_seed_the_record_and_the_round_with_weights():
    section = EvolveConfig()
    drawn = [choose_operator(section, 7, f"id{i}", 1) for i in range(600)]
    assert drawn == [choose_operator(section, 7, f"id{i}", 1) for i in range(600)]
    assert set(drawn) == set(EVOLVE_OPERATORS)
    assert drawn != [choose_operator(section, 7, f"id{i}", 2) for i in range(600)]
    weighted = EvolveConfig(operators={"breadth": 3.0, "deepen": 1.0, "concretize": 0.0})
    counts = Counter(choose_operator(weighted, 7, f"id{i}", 1) for i in range(600))
    assert set(counts) == {"breadth", "deepen"} and counts["breadth"] > 2 * counts["deepen"]


def test_unknown_operators_and_bad_weights_are_config_errors(tmp_path: Path):
    from distillpipe.errors import ConfigError

    with pytest.raises(ConfigError, match=r"config.yaml:\d+: evolve.operators.*unknown operator"):
        evolve_config(tmp_path, operators={"shorten": 1.0})
    with pytest.raises(ConfigError, match="positive sum"):
        evolve_config(tmp_path, operators={"deepen": 0.0})


def test_rewrite_prompts_carry_the_method_and_the_parent_in_both_modes():
    section = EvolveConfig()
    completion = EvolvePrompter(section, "completion")
    request = completion.rewrite(PARENT, "add_constraints", 1)
    assert "Add one more constraint or requirement to it." in request.prompt
    assert request.prompt.endswith("Task: Write a haiku about autumn leaves.\nHarder task:")
    assert "\n\n" in request.params.stop and request.params.temperature == 1.0
    breadth = completion.rewrite(PARENT, "breadth", 1)
    assert breadth.prompt.endswith("New task:") and breadth.id == "p:1".join(
        ["evolve:", ":rewrite"]
    )
    chat = EvolvePrompter(section, "chat").rewrite(PARENT, "complicate_input", 2)
    assert "table, code snippet, JSON object" in chat.messages[0]["content"]
    child = {"id": "c", "instruction": "Write a haiku about autumn leaves in Kyoto."}
    equality = completion.equality(PARENT, child)
    assert equality.params.temperature == 0.0 and equality.prompt.endswith("Verdict:")
    assert completion.answer(child).prompt.endswith("### Response:\n")


def test_elimination_names_the_reason_an_evolution_fails():
    checks = Elimination(EliminationConfig(), EvolvePrompter(EvolveConfig(), "completion"))
    good = "Write a haiku about autumn leaves in Kyoto, using a seasonal word."
    assert checks.cheap(PARENT, good, said(good)) is None
    cases = {
        "": "empty",
        "write a haiku  about autumn leaves.": "no_gain",
        "#Rewritten Prompt#: Write a haiku about leaves in Kyoto.": "markers",
        "Rewrite the given prompt so it is harder.": "markers",
        "Name three rivers in Europe that cross at least two countries, "
        "and give the sea each one flows into.": "markers",  # a worked example
        "1.\n2.\n3. Why? Is it the same?": "stopwords",
    }
    for text, reason in cases.items():
        assert checks.cheap(PARENT, text, said(text))[0] == reason, text
    assert checks.cheap(PARENT, good, said(good, "length"))[0] == "truncated"
    similar = Elimination(
        EliminationConfig(equality="similarity", similarity_threshold=0.8),
        EvolvePrompter(EvolveConfig(), "chat"),
    )
    assert (
        similar.cheap(PARENT, "Write a haiku about the autumn leaves.", said("x"))[0] == "no_gain"
    )
    assert similar.cheap(PARENT, good, said(good)) is None


def test_teacher_verdicts_and_sorry_answers():
    checks = Elimination(EliminationConfig(), EvolvePrompter(EvolveConfig(), "completion"))
    assert checks.equality(said(" Equal"))[0] == "no_gain"
    assert checks.equality(said(" Different")) is None
    assert checks.equality(said(" They are not equal.")) is None
    assert checks.equality(said(" I cannot tell.")) is None  # unclear: the evolution stays
    assert checks.answer(said("Sorry, I cannot help with that."))[0] == "sorry"
    assert checks.answer(said("Sorry for the wait! " + "word " * 90)) is None
    assert checks.answer(said("Here is a haiku.")) is None


def test_output_keeps_originals_and_survivors_as_configured():
    original, first, second = {"id": "o"}, {"id": "1"}, {"id": "2"}
    assert _kept(EvolveConfig(), original, [first, second]) == [original, first, second]
    assert _kept(EvolveConfig(output="evolved"), original, [first, second]) == [first, second]
    assert _kept(EvolveConfig(output="last"), original, [first, second]) == [second]
    assert _kept(EvolveConfig(output="last"), original, []) == [original]


@pytest.mark.slow
def test_gemma_evolves_records_with_lineage_and_a_rerun_is_identical(tmp_path: Path):
    config = evolve_config(
        tmp_path, rounds=1, elimination={"equality_max_tokens": 4, "answer_max_tokens": 24}
    )
    write_jsonl(tmp_path / "in.jsonl", RECORDS)
    stage = stage_named("evolve")
    result = run_stage(
        stage,
        config,
        tmp_path / "in.jsonl",
        tmp_path / "out.jsonl",
        rejected_path=tmp_path / "rejected.jsonl",
    )
    out = list(read_records(tmp_path / "out.jsonl"))
    rejected = list(read_jsonl(tmp_path / "rejected.jsonl"))
    originals = [r for r in out if "origin" not in r]
    assert [r["instruction"] for r in originals] == [r["instruction"] for r in RECORDS]
    evolved = [r for r in out if "origin" in r]
    assert evolved, "gemma should get at least one evolution through elimination"
    ids = {r["id"] for r in out}
    for record in evolved:
        origin = record["origin"]
        assert origin["stage"] == "evolve"
        assert origin["parent_id"] in ids and origin["operator"] in EVOLVE_OPERATORS
        assert origin["round"] == 1
        assert record["instruction"].strip()
    by_id = {record["id"]: record for record in out}
    for record in evolved:  # meta the stage does not own follows the lineage
        assert record.get("meta") == by_id[record["origin"]["parent_id"]].get("meta")
    stats = result.stats["evolve"]
    assert stats["attempts"] == 2 and stats["survived"] == len(evolved)
    assert stats["attempts"] == stats["survived"] + len(rejected)
    for row in rejected:
        assert row["reject"]["reason"] and row["origin"]["stage"] == "evolve"

    again = run_stage(stage, config, tmp_path / "in.jsonl", tmp_path / "again.jsonl")
    assert again.stats["teacher"]["teacher_calls"] == 0
    assert (tmp_path / "again.jsonl").read_bytes() == (tmp_path / "out.jsonl").read_bytes()


@pytest.mark.slow
def test_a_killed_evolve_run_resumes_to_the_clean_output_without_asking_again(tmp_path: Path):
    evolve_config(
        tmp_path, max_tokens=24, elimination={"equality": "similarity", "answer_check": False}
    )
    write_jsonl(tmp_path / "in.jsonl", RECORDS)

    def args_for(name: str) -> list[str]:
        return ["evolve", "-c", str(tmp_path / "config.yaml"), "-i", str(tmp_path / "in.jsonl"),
                "-o", str(tmp_path / f"{name}.jsonl")]  # fmt: skip

    resume_and_compare(tmp_path, args_for, total_calls_at_least=4)
