"""`teachers:` in the config: a named list of teacher blocks of any backends, each with
its own n, share, weight, max_cost and sampling; names unique; exclusive with `teacher:`;
stages name the member they ask, and an unknown name is one line naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import write_config

from distillpipe.config import load_config
from distillpipe.errors import ConfigError
from distillpipe.teachers.members import PanelMember, single_member, split_member

SERVER = "http://127.0.0.1:9/v1"


def panel(**extra: object) -> dict:
    return {
        "teachers": [
            {"name": "small", "backend": "llamacpp", "mode": "completion", "n_ctx": 512},
            {
                "name": "server",
                "backend": "openai",
                "model": "gemma",
                "base_url": SERVER,
                "n": 3,
                "share": 0.5,
                "weight": 2.0,
                "max_cost": 1.5,
                "sampling": {"temperature": 0.1},
            },
        ],
        **extra,
    }


def test_a_panel_of_mixed_backends_keeps_each_members_own_options(tmp_path: Path):
    config = load_config(write_config(tmp_path / "c.yaml", panel()))
    small, server = config.teachers
    assert (small.name, small.teacher.backend, small.n, small.weight) == (
        "small",
        "llamacpp",
        None,
        1.0,
    )
    assert (server.teacher.backend, server.teacher.base_url) == ("openai", SERVER)
    assert (server.n, server.share, server.weight, server.max_cost) == (3, 0.5, 2.0, 1.5)
    assert server.sampling.temperature == 0.1
    assert config.teacher is small.teacher  # the first member is the default teacher
    assert config.member("server") is server and config.member() is small


def test_a_member_block_is_validated_by_its_backends_options(tmp_path: Path):
    data = panel()
    data["teachers"][1]["no_such_option"] = 1
    with pytest.raises(ConfigError, match=r"c.yaml:\d+: unknown key 'teachers.1.no_such_option'"):
        load_config(write_config(tmp_path / "c.yaml", data))


def test_a_second_teacher_of_the_same_name_names_its_key(tmp_path: Path):
    data = panel()
    data["teachers"][1]["name"] = "small"
    with pytest.raises(
        ConfigError, match=r"c.yaml:\d+: teachers\[1\]\.name: a second teacher named 'small'"
    ):
        load_config(write_config(tmp_path / "c.yaml", data))


def test_a_bad_member_key_names_it_in_the_list(tmp_path: Path):
    data = panel()
    data["teachers"][1]["share"] = 2
    with pytest.raises(ConfigError, match=r"teachers\[1\]\.share: Input should be less than"):
        load_config(write_config(tmp_path / "c.yaml", data))


def test_teachers_and_teacher_exclude_each_other(tmp_path: Path):
    data = panel(teacher={"backend": "llamacpp"})
    with pytest.raises(ConfigError, match="teachers: and teacher: exclude each other"):
        load_config(write_config(tmp_path / "c.yaml", data))


def test_stages_name_the_member_that_asks_them(tmp_path: Path):
    data = panel(
        self_instruct={"teacher": "small", "target": 2},
        evolve={"teacher": "server"},
        filter=[{"type": "reward", "backend": "judge", "teacher": "server"}],
    )
    config = load_config(write_config(tmp_path / "c.yaml", data))
    assert config.self_instruct.teacher == "small"
    assert config.evolve.teacher == "server"
    assert config.filter[0].teacher == "server"


def test_an_unknown_member_name_lists_the_members(tmp_path: Path):
    data = panel(self_instruct={"teacher": "big"})
    with pytest.raises(
        ConfigError,
        match=r"c.yaml:\d+: self_instruct.teacher: no teacher named 'big' in teachers: "
        r"\(named: small, server\)",
    ):
        load_config(write_config(tmp_path / "c.yaml", data))


def test_a_judge_naming_a_member_of_a_single_teacher_config_is_an_error(tmp_path: Path):
    data = {"filter": [{"type": "reward", "backend": "judge", "teacher": "x"}]}
    with pytest.raises(ConfigError, match=r"filter.0.teacher: no teacher named 'x'.*single"):
        load_config(write_config(tmp_path / "c.yaml", data))


def test_every_member_with_share_zero_leaves_no_one_to_answer(tmp_path: Path):
    data = panel()
    for member in data["teachers"]:
        member["share"] = 0
    with pytest.raises(ConfigError, match="every member has share: 0"):
        load_config(write_config(tmp_path / "c.yaml", data))


def test_several_teachers_refuse_the_modes_they_do_not_do(tmp_path: Path):
    data = panel(generate={"conversation": {"turns": 2}})
    with pytest.raises(ConfigError, match=r"generate\.conversation: not supported with several"):
        load_config(write_config(tmp_path / "c.yaml", data))


def test_a_members_sampling_is_checked_against_its_models_rules(tmp_path: Path):
    data = panel()
    data["teachers"][1] = {"name": "claude", "backend": "anthropic", "model": "claude-sonnet-4-5"}
    data["teachers"][1]["sampling"] = {"top_p": 0.5}
    with pytest.raises(ConfigError, match=r"c.yaml:\d+: teachers\[1\]\.sampling\.top_p: "):
        load_config(write_config(tmp_path / "c.yaml", data))


def test_split_member_and_a_single_teacher_as_a_panel_of_one(tmp_path: Path):
    member, block = split_member({"name": "a", "n": 2, "backend": "llamacpp", "n_ctx": 64})
    assert member == {"name": "a", "n": 2} and block == {"backend": "llamacpp", "n_ctx": 64}
    config = load_config(write_config(tmp_path / "c.yaml", {}))
    one = single_member(config.teacher)
    assert isinstance(one, PanelMember) and one.teacher is config.teacher
    assert config.teachers is None and [m.teacher for m in config.panel_members()] == [
        config.teacher
    ]
