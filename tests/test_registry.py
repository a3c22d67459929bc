"""Plug-ins by entry point: the built-ins as registered, and a third-party filter,
stage and export format.

Each third-party package is a module plus a ``*.dist-info`` folder on a
temporary ``sys.path`` entry: what ``pip install`` of a package whose
pyproject has one ``[project.entry-points."distillpipe.filters"]`` line (or
``distillpipe.stages``, ``distillpipe.exporters``) leaves.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import orjson
import pytest
from support import small_llamacpp_config, write_config

from distillpipe import registry
from distillpipe.config import load_config
from distillpipe.errors import ConfigError
from distillpipe.filters.base import filter_class
from distillpipe.io import read_jsonl, write_jsonl
from distillpipe.pipeline import run_pipeline
from distillpipe.records import new_record
from distillpipe.runner import enabled_stages, run_stage
from distillpipe.stages import registered_stages, stage_named

PYPROJECT = Path(__file__).parent.parent / "pyproject.toml"

SHOUT_FILTER = '''
from typing import ClassVar

from distillpipe.filters.base import Filter, FilterOptions, Verdict


class ShoutOptions(FilterOptions):
    type: str = "shout"
    max_capitals: float = 0.5


class ShoutFilter(Filter):
    """Rejects a response written mostly in capitals."""

    type: ClassVar[str] = "shout"
    Options = ShoutOptions

    def score(self, records):
        texts = [record["responses"][0]["text"] for record in records]
        return [sum(c.isupper() for c in t) / max(1, sum(c.isalpha() for c in t)) for t in texts]

    def decide(self, record, score):
        if score > self.options.max_capitals:
            return Verdict.rejected(f"{score:.0%} capitals", score)
        return Verdict.kept(score)
'''


GROUPS = [registry.TEACHERS, registry.FILTERS, registry.STAGES, registry.EXPORTERS]


@pytest.mark.parametrize("group", GROUPS)
def test_the_installed_entry_points_are_the_pyprojects(group: str):
    declared = tomllib.loads(PYPROJECT.read_text())["project"]["entry-points"][group]
    assert registry.names(group) == sorted(declared), "stale metadata: pip install -e . again"
    for name, target in declared.items():
        module, _, attribute = target.partition(":")
        loaded = registry.load_plugin(group, name, f"{name} unknown")
        assert (loaded.__module__, loaded.__name__) == (module, attribute)


def test_an_unknown_name_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"filter type 'nope' unknown \(known: .*length.*\)"):
        filter_class("nope")


def plugin_package(site: Path, name: str, source: str, entry_points: str) -> None:
    """What ``pip install`` of package ``name`` (one module) leaves on ``site``."""
    info = site / f"{name}-0.1.dist-info"
    info.mkdir(parents=True)
    (site / f"{name}.py").write_text(source)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points)


@pytest.fixture
def shout_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    site = tmp_path / "site"
    entry = "[distillpipe.filters]\nshout = distillpipe_shout:ShoutFilter\n"
    plugin_package(site, "distillpipe_shout", SHOUT_FILTER, entry)
    monkeypatch.syspath_prepend(str(site))
    return site


def test_a_third_party_filter_registers_with_one_entry_point_and_runs_from_a_config(
    tmp_path: Path, shout_package: Path
):
    assert "shout" in registry.names(registry.FILTERS)
    records = []
    for instruction, text in (("Greet me.", "Hello there."), ("Greet me loudly.", "HELLO THERE!")):
        record = new_record(instruction)
        record["responses"] = [{"text": text, "model": "m", "finish_reason": "stop", "sample": 0}]
        records.append(record)
    write_jsonl(tmp_path / "in.jsonl", records)
    path = write_config(
        tmp_path / "c.yaml",
        {
            "name": "t",
            "teacher": {"backend": "llamacpp"},
            "filter": [{"type": "shout", "max_capitals": 0.6}],
        },
    )
    config = load_config(path)
    out, rejected = tmp_path / "out.jsonl", tmp_path / "rejected.jsonl"
    run_stage(stage_named("filter"), config, tmp_path / "in.jsonl", out, rejected_path=rejected)
    assert [r["responses"][0]["text"] for r in read_jsonl(out)] == ["Hello there."]
    [loud] = read_jsonl(rejected)
    assert loud["reject"]["filter"] == "shout" and loud["reject"]["reason"] == "100% capitals"


def test_a_third_party_filters_bad_option_names_its_line(tmp_path: Path, shout_package: Path):
    path = write_config(
        tmp_path / "c.yaml",
        {"name": "t", "teacher": {"backend": "llamacpp"}, "filter": [{"type": "shout", "x": 1}]},
    )
    with pytest.raises(ConfigError, match=r"c\.yaml:\d+: .*x"):
        load_config(path)


UPPER_PLUGIN = '''
from typing import ClassVar

from distillpipe.config import StageOptions
from distillpipe.exporters.formats import Exporter


class UpperOptions(StageOptions):
    suffix: str = "!"


class UpperStage:
    """Capitalises every response and appends the section's suffix."""

    name: ClassVar[str] = "upper"
    position: ClassVar[int] = 350  # after generate (300), before filter (400)
    section: ClassVar[str] = "upper"
    config_sections: ClassVar[tuple[str, ...]] = ("upper",)
    prompt_folders: ClassVar[tuple[str, ...]] = ()
    Options = UpperOptions

    def run(self, records, ctx):
        suffix = ctx.config.section(self.section).suffix
        for record in records:
            for response in record["responses"]:
                response["text"] = response["text"].strip().upper() + suffix
            yield record


class TextExporter(Exporter):
    """One training text per example: the prompt, a blank line, the answer."""

    def row(self, example, record, section):
        return {"text": f"{example.user}\\n\\n{example.response}", "id": record["id"]}
'''
UPPER_ENTRY_POINTS = """[distillpipe.stages]
upper = distillpipe_upper:UpperStage

[distillpipe.exporters]
text = distillpipe_upper:TextExporter
"""


@pytest.fixture
def upper_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    site = tmp_path / "site"
    plugin_package(site, "distillpipe_upper", UPPER_PLUGIN, UPPER_ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(site))
    return site


def test_the_built_in_stages_chain_in_pipeline_order():
    assert [stage.name for stage in registered_stages()] == [
        "topics",
        "seed",
        "personas",
        "magpie",
        "evolve",
        "generate",
        "filter",
        "export",
    ]


def test_an_unknown_stage_lists_the_known_ones():
    known = "evolve, export, filter, generate, magpie, personas, seed, topics"
    with pytest.raises(ConfigError, match=rf"stage 'nope' unknown \(known: {known}\)"):
        stage_named("nope")


def test_an_unknown_export_format_names_its_key_line_and_the_known_formats(tmp_path: Path):
    data = {"name": "t", "teacher": {"backend": "llamacpp"}, "export": {"format": "nope"}}
    path = write_config(tmp_path / "c.yaml", data)
    known = "alpaca, dpo, messages, prompt-completion, sharegpt"
    expected = f"{path}:5: export.format: format 'nope' unknown (known: {known})"
    with pytest.raises(ConfigError, match=f"^{re.escape(expected)}$"):
        load_config(path)


def test_a_plugin_stage_section_is_validated_by_its_options(tmp_path: Path, upper_package: Path):
    names = [stage.name for stage in registered_stages()]
    assert names[names.index("generate") + 1] == "upper"
    base = {"name": "t", "teacher": {"backend": "llamacpp"}}
    config = load_config(write_config(tmp_path / "c.yaml", {**base, "upper": {"suffix": "?"}}))
    assert config.section("upper").suffix == "?"
    assert config.public_dump()["upper"] == {"enabled": True, "suffix": "?"}
    assert [stage.name for stage in enabled_stages(config)] == ["generate", "upper"]
    off = {**base, "upper": {"enabled": False}}
    assert "upper" not in [s.name for s in enabled_stages(load_config(write_config(
        tmp_path / "off.yaml", off)))]  # fmt: skip
    bad = write_config(tmp_path / "bad.yaml", {**base, "upper": {"sufix": "?"}})
    with pytest.raises(ConfigError, match=r"bad\.yaml:5: unknown key 'upper\.sufix'"):
        load_config(bad)
    typo = write_config(tmp_path / "typo.yaml", {**base, "uper": {}})
    with pytest.raises(ConfigError, match=r"typo\.yaml:4: unknown key 'uper'"):
        load_config(typo)


@pytest.mark.slow
def test_a_third_party_stage_and_format_run_from_a_config(tmp_path: Path, upper_package: Path):
    write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "instruction": "Name a colour."}])
    data = {
        **small_llamacpp_config(max_tokens=4, temperature=0.0),
        "cache": {"path": str(tmp_path / "cache.sqlite")},
        "upper": {"suffix": "!"},
        "export": {"format": "text", "dataset_card": False},
    }
    path = write_config(tmp_path / "c.yaml", data)

    def run() -> dict[str, bool]:
        results = run_pipeline(load_config(path), tmp_path / "run", tmp_path / "in.jsonl")
        return {result.name: skipped for result, skipped in results}

    assert run() == {"generate": False, "upper": False, "export": False}
    [generated] = read_jsonl(tmp_path / "run" / "generate.jsonl")
    answer = generated["responses"][0]["text"].strip().upper() + "!"
    [shouted] = read_jsonl(tmp_path / "run" / "upper.jsonl")
    assert shouted["responses"][0]["text"] == answer
    rows = list(read_jsonl(tmp_path / "run" / "export" / "train.jsonl"))
    assert rows == [{"text": f"Name a colour.\n\n{answer.strip()}", "id": "a"}]
    assert run() == {"generate": True, "upper": True, "export": True}

    write_config(path, {**data, "upper": {"suffix": "?!"}})  # the stage's own section
    assert run() == {"generate": True, "upper": False, "export": False}
    [row] = read_jsonl(tmp_path / "run" / "export" / "train.jsonl")
    assert row["text"].endswith("?!")


def test_the_cli_exports_to_a_third_party_format(
    tmp_path: Path, upper_package: Path, cli_env: dict[str, str]
):
    config = write_config(tmp_path / "c.yaml", {"name": "t", "teacher": {"backend": "llamacpp"}})
    record = new_record("Greet me.")
    record["responses"] = [{"text": "Hello.", "model": "m", "finish_reason": "stop", "sample": 0}]
    write_jsonl(tmp_path / "in.jsonl", [record])
    env = {**cli_env, "PYTHONPATH": str(upper_package)}

    def export(format: str) -> subprocess.CompletedProcess[bytes]:
        command = [sys.executable, "-m", "distillpipe", "export", "-c", str(config), "-i",
                   str(tmp_path / "in.jsonl"), "-o", "-", "-q", "--format", format]  # fmt: skip
        return subprocess.run(command, capture_output=True, env=env, timeout=120)

    done = export("text")
    assert done.returncode == 0, done.stderr.decode()
    assert [orjson.loads(line) for line in done.stdout.splitlines()] == [
        {"text": "Greet me.\n\nHello.", "id": record["id"]}
    ]
    unknown = export("nope")
    assert unknown.returncode != 0
    assert re.search(
        r"export\.format: format 'nope' unknown \(known: alpaca, .*sharegpt, text\)",
        unknown.stderr.decode(),
    )
