from pathlib import Path

import pytest

from distillpipe.config import load_config, show
from distillpipe.errors import ConfigError

BASE = """\
name: demo
seed: 3
teacher:
  backend: openai
  model: gpt-4o-mini
  base_url: http://127.0.0.1:9/v1
generate:
  n: 2
  temperature: 0.5
"""


def config_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_a_valid_config_fills_in_defaults(tmp_path: Path):
    config = load_config(config_file(tmp_path, BASE))
    assert config.teacher.backend == "openai"
    assert config.teacher.model == "gpt-4o-mini"
    assert config.generate.n == 2
    assert config.generate.max_tokens == 256


def test_no_teacher_block_means_the_embedded_llamacpp_teacher(tmp_path: Path):
    config = load_config(config_file(tmp_path, "name: x\n"))
    assert config.teacher.backend == "llamacpp"
    assert config.teacher.model == "gemma-3-270m-q4_k_m"


def test_an_unknown_key_is_named_with_file_and_line(tmp_path: Path):
    path = config_file(tmp_path, BASE + "  temprature: 0.2\n")
    with pytest.raises(ConfigError, match=r"config\.yaml:10: unknown key 'generate\.temprature'"):
        load_config(path)


def test_an_unknown_teacher_option_is_named_with_its_line(tmp_path: Path):
    path = config_file(tmp_path, BASE.replace("  model: gpt", "  modle: x\n  model: gpt"))
    with pytest.raises(ConfigError, match=r"config\.yaml:5: unknown key 'teacher\.modle'"):
        load_config(path)


def test_a_bad_value_names_the_key(tmp_path: Path):
    path = config_file(tmp_path, BASE.replace("n: 2", "n: 0"))
    with pytest.raises(ConfigError, match=r"config\.yaml:8: generate\.n: Input should be greater"):
        load_config(path)


def test_an_unknown_backend_lists_the_known_ones(tmp_path: Path):
    path = config_file(tmp_path, BASE.replace("backend: openai", "backend: nope"))
    with pytest.raises(ConfigError, match=r"config\.yaml:4: .*unknown backend 'nope'.*llamacpp"):
        load_config(path)


def test_invalid_yaml_names_the_line(tmp_path: Path):
    path = config_file(tmp_path, "name: x\ngenerate: [\n")
    with pytest.raises(ConfigError, match=r"config\.yaml:3: invalid YAML"):
        load_config(path)


def test_set_overrides_keep_their_types(tmp_path: Path):
    config = load_config(
        config_file(tmp_path, BASE),
        ["generate.temperature=0.2", "generate.stop=['###']", "teacher.concurrency=8"],
    )
    assert config.generate.temperature == 0.2
    assert config.generate.stop == ["###"]
    assert config.teacher.concurrency == 8


def test_a_set_override_of_an_unknown_key_is_an_error(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"unknown key 'generate\.temperatur'"):
        load_config(config_file(tmp_path, BASE), ["generate.temperatur=0.2"])


def test_malformed_set_override(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"--set 'generate\.n': expected KEY=VALUE"):
        load_config(config_file(tmp_path, BASE), ["generate.n"])


def test_environment_interpolation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DP_TEST_MODEL", "my-model")
    text = BASE.replace("gpt-4o-mini", "${DP_TEST_MODEL}").replace("demo", "${DP_NAME:-fallback}")
    config = load_config(config_file(tmp_path, text))
    assert config.teacher.model == "my-model"
    assert config.name == "fallback"


def test_a_missing_environment_variable_names_key_and_line(tmp_path: Path):
    text = BASE.replace("gpt-4o-mini", "${DP_SURELY_UNSET_VARIABLE}")
    with pytest.raises(ConfigError, match=r"config\.yaml:5: teacher\.model: environment variable"):
        load_config(config_file(tmp_path, text))


def test_show_redacts_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DP_SECRET_TOKEN", "sk-sentinel-123")
    text = BASE.replace(
        "  base_url: http://127.0.0.1:9/v1",
        "  base_url: http://127.0.0.1:9/v1\n  api_key: literal-key-456\n"
        "  headers: {X-Trace: '${DP_SECRET_TOKEN}'}",
    )
    config = load_config(config_file(tmp_path, text))
    shown = show(config)
    assert "literal-key-456" not in shown
    assert "sk-sentinel-123" not in shown
    assert "***" in shown
    assert "sk-sentinel-123" not in str(config.public_dump())


def test_fingerprint_covers_only_the_named_sections(tmp_path: Path):
    path = config_file(tmp_path, BASE)
    one = load_config(path)
    other = load_config(path, ["name=renamed"])
    changed = load_config(path, ["generate.temperature=0.1"])
    assert one.fingerprint("teacher", "generate") == other.fingerprint("teacher", "generate")
    assert one.fingerprint("teacher", "generate") != changed.fingerprint("teacher", "generate")
