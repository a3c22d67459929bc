"""A record's tests, the programs they make of a solution, and the verdict of a run.

Test shapes a record's tests field may hold:

    "assert f(1) == 2"                               assert code (a string)
    ["assert f(1) == 2", ...]                        MBPP's test_list
    {test|tests|test_list: ..., entry_point?, setup|test_setup_code?, language?}
                                                     HumanEval: `test` defines check(candidate),
                                                     then check(<entry_point>) runs
    {cases: [{input, output}, ...]} or {inputs: [...], outputs: [...]}
                                                     stdin → expected stdout (competitive)

Assert tests make one program: setup, the solution, the tests, the entry-point
check; the first failing line is reported. Stdin cases run the solution once
per case; by default a sample stops at its first failing case.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from distillpipe.sandbox.base import Limits, Outcome

Compare = Literal["exact", "lines", "tokens"]
STDERR_TAIL = 2000
SHOWN = 200  # characters of expected/actual output kept in a verdict

_MEMORY = re.compile(
    r"MemoryError|heap out of memory|Cannot allocate memory|std::bad_alloc|out of memory", re.I
)
_SYNTAX = re.compile(r"\b(SyntaxError|IndentationError|TabError)\b|syntax error")
_ASSERTION = re.compile(r"\bAssertionError\b")
_ERROR_LINE = re.compile(r"^\s*(?:[\w.]+(?:Error|Exception|Exit|Interrupt)\b.*|Error\b.*)$")


@dataclass(frozen=True, slots=True)
class CodeTests:
    asserts: str | None = None
    setup: str = ""
    entry_point: str | None = None
    cases: tuple[tuple[str, str], ...] = ()
    language: str | None = None


def parse_tests(value: Any) -> CodeTests:
    """The tests ``value`` describes; ValueError (a sentence) when it has no known shape."""
    if isinstance(value, str):
        return CodeTests(asserts=value)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return CodeTests(asserts="\n".join(value))
    if not isinstance(value, dict):
        raise ValueError(f"tests must be code, a list of asserts or an object, not {_kind(value)}")
    language = value.get("language")
    if language is not None and not isinstance(language, str):
        raise ValueError("tests.language must be a language name")
    cases = _cases(value)
    if cases:
        return CodeTests(cases=cases, language=language, setup=_text(value, "setup"))
    code = next((value[k] for k in ("test", "tests", "test_list") if value.get(k)), None)
    if isinstance(code, list) and all(isinstance(v, str) for v in code):
        code = "\n".join(code)
    if not isinstance(code, str) or not code.strip():
        raise ValueError("tests have neither assert code (test, tests, test_list) nor cases")
    entry_point = value.get("entry_point")
    named = isinstance(entry_point, str) and entry_point.isidentifier()
    if entry_point is not None and not named:
        raise ValueError(f"tests.entry_point must be a name, got {entry_point!r}")
    setup = _text(value, "setup") or _text(value, "test_setup_code")
    return CodeTests(asserts=code, setup=setup, entry_point=entry_point, language=language)


def _cases(value: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    if isinstance(value.get("cases"), list):
        pairs = []
        for case in value["cases"]:
            if not isinstance(case, dict) or "output" not in case:
                raise ValueError("each of tests.cases needs an `output` (and an `input`)")
            pairs.append((_str(case.get("input", "")), _str(case["output"])))
        return tuple(pairs)
    inputs, outputs = value.get("inputs"), value.get("outputs")
    if isinstance(inputs, list) and isinstance(outputs, list):
        if len(inputs) != len(outputs):
            raise ValueError(f"tests have {len(inputs)} inputs but {len(outputs)} outputs")
        return tuple((_str(i), _str(o)) for i, o in zip(inputs, outputs, strict=True))
    return ()


def _str(value: Any) -> str:
    return "\n".join(map(str, value)) if isinstance(value, list) else str(value)


def _text(value: dict[str, Any], key: str) -> str:
    text = value.get(key) or ""
    return text if isinstance(text, str) else ""


def _kind(value: Any) -> str:
    return type(value).__name__


@dataclass(frozen=True, slots=True)
class AssertProgram:
    source: str
    tests_from: int  # the program's first line (1-based) that belongs to the tests


def assert_program(solution: str, spec: CodeTests, check: str | None) -> AssertProgram:
    head = "\n".join(part for part in (spec.setup.rstrip(), solution.rstrip()) if part)
    head += "\n\n"
    tail = (spec.asserts or "").rstrip() + "\n"
    if spec.entry_point and check:
        tail += "\n" + check.format(entry_point=spec.entry_point) + "\n"
    return AssertProgram(head + tail, head.count("\n") + 1)


def case_program(solution: str, spec: CodeTests) -> str:
    return "\n".join(part for part in (spec.setup.rstrip(), solution.rstrip()) if part) + "\n"


def same_output(expected: str, actual: str, compare: Compare) -> bool:
    if compare == "exact":
        return expected == actual
    if compare == "tokens":
        return expected.split() == actual.split()
    return _lines(expected) == _lines(actual)


def _lines(text: str) -> list[str]:
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def failure(outcome: Outcome, limits: Limits) -> dict[str, Any] | None:
    """Why a run failed before any output check, or None when it exited 0."""
    stderr = outcome.stderr
    if outcome.status == "timeout":
        return _verdict("timeout", f"timed out after {limits.wall_s:g} s (wall clock)", stderr)
    if outcome.status == "cpu_limit":
        return _verdict("cpu_limit", f"used more than {limits.cpu_s:g} s of CPU time", stderr)
    if outcome.status == "output_limit":
        return _verdict("output_limit", f"wrote more than {limits.output_bytes} bytes", stderr)
    if outcome.status == "sandbox_error":
        return _verdict("sandbox_error", f"the sandbox failed: {_last_line(stderr)}", stderr)
    if outcome.status == "signal":
        if _MEMORY.search(stderr):
            return _verdict("memory_limit", f"ran out of memory: {_last_line(stderr)}", stderr)
        return _verdict("killed", f"killed by signal {outcome.signal}", stderr)
    if outcome.exit_code == 0:
        return None
    reason = _error_line(stderr) or f"exited with status {outcome.exit_code}"
    if _MEMORY.search(stderr):
        return _verdict("memory_limit", f"ran out of memory: {reason}", stderr)
    if _SYNTAX.search(stderr):
        return _verdict("syntax_error", reason, stderr)
    if _ASSERTION.search(stderr):
        return _verdict("wrong_answer", reason, stderr)
    return _verdict("error", reason, stderr)


def failing_line(stderr: str, file_name: str, program: AssertProgram) -> str | None:
    """The test line a failure points at (the innermost frame in the tests)."""
    pattern = re.escape(file_name) + r'(?:", line |:| line )(\d+)'
    numbers = [int(n) for n in re.findall(pattern, stderr)]
    if "Traceback (most recent call last)" not in stderr:
        numbers.reverse()  # V8 and most others print the innermost frame first
    lines = program.source.splitlines()
    in_tests = [n for n in numbers if program.tests_from <= n <= len(lines)]
    return lines[in_tests[-1] - 1].strip() if in_tests else None


def _verdict(status: str, reason: str, stderr: str) -> dict[str, Any]:
    verdict: dict[str, Any] = {"status": status, "reason": reason}
    if stderr.strip():
        verdict["stderr"] = stderr[-STDERR_TAIL:]
    return verdict


def _error_line(stderr: str) -> str | None:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if _ERROR_LINE.match(line)]
    return (errors or lines or [None])[-1]


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no message"


def shown(text: str) -> str:
    return text if len(text) <= SHOWN else text[:SHOWN] + "…"
