"""The format filter on near-valid answers: each is kept or rejected with the reason a
reader needs to fix the prompt or the schema, and a valid one leaves its object in
``responses[].parsed``."""

from __future__ import annotations

from pathlib import Path

import pytest

from distillpipe.config import ConfigSource, load_config, parse_config
from distillpipe.errors import ConfigError, InputError
from distillpipe.filters.base import build_filter
from distillpipe.filters.format import FormatFilter, FormatOptions
from distillpipe.filters.json_text import extract_json

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "kind": {"enum": ["fruit", "vegetable"]},
        "colors": {"type": "array", "items": {"type": "string"}, "minItems": 1},
    },
    "required": ["name", "kind", "colors"],
    "additionalProperties": False,
}

VALID = '{"name": "apple", "kind": "fruit", "colors": ["red"]}'

# (answer, strip, expected reason or None when kept)
CORPUS = [
    (VALID, ["fence"], None),
    ('{"name": "apple", "kind": "fruit"}', ["fence"], "$: 'colors' is a required property"),
    (
        '{"name": "apple", "kind": "fruit", "colors": "red"}',
        ["fence"],
        "$.colors: 'red' is not of type 'array'",
    ),
    (
        '{"name": "apple", "kind": "nut", "colors": ["red"]}',
        ["fence"],
        "$.kind: 'nut' is not one of ['fruit', 'vegetable']",
    ),
    (
        '{"name": "apple", "kind": "fruit", "colors": [7]}',
        ["fence"],
        "$.colors[0]: 7 is not of type 'string'",
    ),
    (
        '{"name": "apple", "kind": "fruit", "colors": ["red"], "taste": "sweet"}',
        ["fence"],
        "$: Additional properties are not allowed ('taste' was unexpected)",
    ),
    (f"```json\n{VALID}\n```", ["fence"], None),
    (f"```\n{VALID}\n```", ["fence"], None),
    (f"```json\n{VALID}\n```", [], "not JSON: Expecting value: line 1 column 1 (char 0)"),
    (f"Here is the JSON:\n{VALID}", ["fence"], "not JSON: Expecting value: line 1 column 1"),
    (f"Here is the JSON:\n{VALID}\nHope it helps.", ["fence", "prose"], None),
    (f"Sure! ```json\n{VALID}\n``` Anything else?", ["fence", "prose"], None),
    ('{"name": "apple", "kind": "fruit", "colors": ["red"]', ["fence", "prose"], "not JSON"),
    ("", ["fence"], "not JSON: the answer is empty"),
    ('["apple"]', ["fence"], "$: ['apple'] is not of type 'object'"),
]


def record_with(*answers: str, **fields) -> dict:
    responses = [{"text": text, "model": "m", "sample": i} for i, text in enumerate(answers)]
    return {"id": "r1", "instruction": "Describe an apple.", "responses": responses, **fields}


def verdict_of(filter: FormatFilter, record: dict):
    [score] = filter.score([record])
    return filter.decide(record, score)


@pytest.mark.parametrize(("answer", "strip", "reason"), CORPUS)
def test_near_valid_answers_get_the_expected_verdict_and_reason(answer, strip, reason):
    filter = FormatFilter(FormatOptions(type="format", schema=SCHEMA, strip=strip))
    record = record_with(answer)
    verdict = verdict_of(filter, record)
    if reason is None:
        assert verdict.keep, verdict.reason
        assert record["responses"][0]["parsed"] == {
            "name": "apple",
            "kind": "fruit",
            "colors": ["red"],
        }
    else:
        assert not verdict.keep
        assert verdict.reason.startswith(f"response 0: {reason}")
        assert "parsed" not in record["responses"][0]


def test_the_corpus_verdicts_add_up():
    filter = FormatFilter(FormatOptions(type="format", schema=SCHEMA, strip=["fence", "prose"]))
    kept = sum(verdict_of(filter, record_with(answer)).keep for answer, _, _ in CORPUS)
    kept_as_listed = sum(reason is None for _, _, reason in CORPUS)
    # with both wrappers stripped, the fenced answer read raw and the prose one pass too
    assert (kept_as_listed, kept) == (5, 7)


def test_the_first_failing_sample_names_the_reason_and_every_sample_is_judged():
    filter = FormatFilter(FormatOptions(type="format", schema=SCHEMA))
    record = record_with(VALID, '{"name": 1, "kind": "fruit", "colors": ["red"]}')
    [score] = filter.score([record])
    assert filter.passing(score) == [True, False]
    verdict = filter.decide(record, score)
    assert verdict.reason == "response 1: $.name: 1 is not of type 'string'"
    assert verdict.score == {"valid": [True, False], "errors": [None, verdict.reason[12:]]}
    assert filter.value(score) == 0.5


def test_the_records_own_schema_wins_over_the_runs(tmp_path: Path):
    config = parse_config(
        {"generate": {"response_format": SCHEMA}, "filter": [{"type": "format"}]},
        ConfigSource("c.yaml", None),
    )
    [options] = config.filter
    filter = build_filter(options, config)
    label_schema = {"type": "object", "required": ["label"]}
    assert verdict_of(filter, record_with(VALID)).keep
    own = verdict_of(filter, record_with(VALID, schema=label_schema))
    assert own.reason == "response 0: $: 'label' is a required property"
    assert verdict_of(filter, record_with('{"label": "x"}', schema=label_schema)).keep
    assert not verdict_of(filter, record_with('"just text"', schema="json")).keep


def test_a_bad_record_schema_names_the_record():
    filter = FormatFilter(FormatOptions(type="format"))
    with pytest.raises(InputError, match=r"record r1: schema: not a valid JSON Schema"):
        filter.score([record_with(VALID, schema={"type": "objekt"})])


def test_without_any_schema_nothing_is_parsed_and_the_record_is_kept():
    filter = FormatFilter(FormatOptions(type="format"))
    record = record_with("prose")
    assert verdict_of(filter, record).keep
    assert "parsed" not in record["responses"][0]


@pytest.mark.parametrize(
    ("answer", "kept"), [("positive", True), (" negative\n", True), ("Positive", False)]
)
def test_labels(answer: str, kept: bool):
    filter = FormatFilter(FormatOptions(type="format", labels=["positive", "negative"]))
    verdict = verdict_of(filter, record_with(answer))
    assert verdict.keep is kept
    if not kept:
        assert verdict.reason == "response 0: 'Positive' is not one of ['positive', 'negative']"


def test_labels_ignoring_case_and_a_regex():
    loose = FormatFilter(FormatOptions(type="format", labels=["yes", "no"], ignore_case=True))
    assert verdict_of(loose, record_with("YES")).keep
    dated = FormatFilter(FormatOptions(type="format", regex=r"\d{4}-\d{2}-\d{2}"))
    assert verdict_of(dated, record_with("2024-02-29")).keep
    verdict = verdict_of(dated, record_with("on 2024-02-29"))
    assert verdict.reason == r"response 0: does not match '\\d{4}-\\d{2}-\\d{2}'"


def test_a_broken_regex_or_schema_fails_at_config_validation(tmp_path: Path):
    config = tmp_path / "c.yaml"
    config.write_text("filter:\n  - type: format\n    regex: '(unclosed'\n")
    with pytest.raises(ConfigError, match=r"c\.yaml:3: filter\.0\.regex: .*not a regular"):
        load_config(config)
    config.write_text("filter:\n  - type: format\n    schema: {type: objekt}\n")
    with pytest.raises(ConfigError, match=r"c\.yaml:3: filter\.0\.schema: .*not a valid JSON"):
        load_config(config)


def test_a_schema_file_beside_the_config(tmp_path: Path):
    (tmp_path / "fruit.json").write_text('{"type": "object", "required": ["name"]}')
    config = tmp_path / "c.yaml"
    config.write_text("filter:\n  - type: format\n    schema: fruit.json\n")
    [options] = load_config(config).filter
    assert options.schema_ == {"type": "object", "required": ["name"]}
    assert options.model_dump(mode="json")["schema"] == options.schema_
    config.write_text("filter:\n  - type: format\n    schema: missing.json\n")
    with pytest.raises(ConfigError, match=r"c\.yaml:3: filter\.0\.schema: cannot read schema"):
        load_config(config)


def test_extraction_never_evaluates_the_answer():
    assert extract_json("__import__('os').system('true')").error.startswith("not JSON")
