"""Test shapes a record may hold, the programs they make, and how a failure is read."""

from __future__ import annotations

import pytest

from distillpipe.filters.code_tests import (
    CodeTests,
    assert_program,
    failing_line,
    parse_tests,
    same_output,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("assert f(1) == 2", CodeTests(asserts="assert f(1) == 2")),
        (["assert f(1)", "assert f(2)"], CodeTests(asserts="assert f(1)\nassert f(2)")),
        (
            {"test": "def check(candidate): ...", "entry_point": "f"},
            CodeTests(asserts="def check(candidate): ...", entry_point="f"),
        ),
        (
            {"test_list": ["assert f(1)"], "test_setup_code": "import math"},
            CodeTests(asserts="assert f(1)", setup="import math"),
        ),
        (
            {"cases": [{"input": "1\n", "output": "2\n"}], "language": "bash"},
            CodeTests(cases=(("1\n", "2\n"),), language="bash"),
        ),
        ({"inputs": ["a", "b"], "outputs": [1, 2]}, CodeTests(cases=(("a", "1"), ("b", "2")))),
    ],
)
def test_the_shapes_tests_come_in(value, expected: CodeTests) -> None:
    assert parse_tests(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (42, "tests must be code, a list of asserts or an object, not int"),
        ({"entry_point": "f"}, "tests have neither assert code"),
        ({"test": "assert 1", "entry_point": "not a name"}, "tests.entry_point must be a name"),
        ({"inputs": ["a"], "outputs": []}, "tests have 1 inputs but 0 outputs"),
        ({"cases": [{"input": "1"}]}, "each of tests.cases needs an `output`"),
    ],
)
def test_malformed_tests_say_what_is_wrong(value, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_tests(value)


def test_setup_solution_tests_and_the_entry_point_check_in_that_order() -> None:
    spec = CodeTests(
        asserts="def check(c):\n    assert c(1) == 2", setup="import math", entry_point="f"
    )
    program = assert_program("def f(x):\n    return x + 1\n", spec, "check({entry_point})")
    assert program.source == (
        "import math\ndef f(x):\n    return x + 1\n\n"
        "def check(c):\n    assert c(1) == 2\n\ncheck(f)\n"
    )
    lines = program.source.splitlines()
    assert lines[program.tests_from - 1] == "def check(c):"


def test_the_failing_test_line_is_the_innermost_frame_in_the_tests() -> None:
    spec = CodeTests(asserts="def check(c):\n    assert c(1) == 3", entry_point="f")
    program = assert_program("def f(x):\n    return x + 1", spec, "check({entry_point})")
    python = (
        'Traceback (most recent call last):\n  File "/tmp/main.py", line 7, in <module>\n'
        '  File "/tmp/main.py", line 5, in check\nAssertionError\n'
    )
    assert failing_line(python, "main.py", program) == "assert c(1) == 3"
    node = "AssertionError: ...\n    at check (/tmp/main.py:5:5)\n    at Object (/tmp/main.py:7:1)"
    assert failing_line(node, "main.py", program) == "assert c(1) == 3"
    assert failing_line("SyntaxError at line 1", "main.py", program) is None


def test_output_comparison_modes() -> None:
    assert same_output("3\n", "3", "lines") and same_output("a  \nb\n\n", "a\nb", "lines")
    assert not same_output("3\n", "3", "exact")
    assert same_output("1 2\n3", "1\n2 3\n", "tokens") and not same_output("1 2", "1 2 3", "tokens")
