"""Plug-ins by entry point: the built-ins as registered, and a third-party filter.

The third-party package is a module plus a ``*.dist-info`` folder on a
temporary ``sys.path`` entry: what ``pip install`` of a package whose
pyproject has one ``[project.entry-points."distillpipe.filters"]`` line leaves.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from support import write_config

from distillpipe import registry
from distillpipe.config import load_config
from distillpipe.errors import ConfigError
from distillpipe.filters.base import filter_class
from distillpipe.io import read_jsonl, write_jsonl
from distillpipe.records import new_record
from distillpipe.runner import run_stage
from distillpipe.stages import stage_named

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


@pytest.mark.parametrize("group", [registry.TEACHERS, registry.FILTERS])
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


@pytest.fixture
def shout_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    site = tmp_path / "site"
    (site / "distillpipe_shout-0.1.dist-info").mkdir(parents=True)
    (site / "distillpipe_shout.py").write_text(SHOUT_FILTER)
    info = site / "distillpipe_shout-0.1.dist-info"
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: distillpipe-shout\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[distillpipe.filters]\nshout = distillpipe_shout:ShoutFilter\n"
    )
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
