"""The execution filter on corpora this test writes: correct solutions pass; wrong
answers, exceptions and syntax errors fail with the reason; attacks (an infinite loop, a
memory hog, a fork bomb, a socket, a write outside the sandbox) are each stopped and the
machine is checked afterwards; the batch keeps to its time limits; reruns run nothing."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from support import processes_with, write_config

from distillpipe.config import load_config
from distillpipe.exporters.select import pick_preference
from distillpipe.io import read_jsonl, write_jsonl
from distillpipe.records import new_record
from distillpipe.runner import run_stage
from distillpipe.sandbox.bubblewrap import BubblewrapRunner
from distillpipe.stages import stage_named

BWRAP_PROBLEM = BubblewrapRunner().problem()
needs_bwrap = pytest.mark.skipif(
    BWRAP_PROBLEM is not None, reason=f"no bubblewrap: {BWRAP_PROBLEM}"
)


def record(instruction: str, tests, *texts: str) -> dict:
    rec = new_record(instruction)
    if tests is not None:
        rec["reference"] = tests
    rec["responses"] = [
        {"text": t, "model": "m", "finish_reason": "stop", "usage": {}, "sample": i}
        for i, t in enumerate(texts)
    ]
    return rec


def fenced(code: str, tag: str = "python") -> str:
    return f"Here is my solution.\n\n```{tag}\n{code.strip()}\n```\n\nIt runs in O(1)."


HUMANEVAL = {
    "test": (
        "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(-1, 1) == 0\n"
    ),
    "entry_point": "add",
}
MARKER = f"dp-execution-test-{uuid.uuid4().hex[:12]}"
TAGGED_PYTHON = {  # python, with a tag on every command line to find leftovers by
    "command": ["{python}", "-I", "-S", "{file}", MARKER],
    "file": "main.py",
    "fences": ["python", "py"],
    "check": "check({entry_point})",
}


def run_execution(tmp_path: Path, records: list[dict], **options):
    source = tmp_path / "in.jsonl"
    write_jsonl(source, records)
    filter_options = {"type": "execution", "languages": {"python": TAGGED_PYTHON}, **options}
    config_path = write_config(
        tmp_path / "config.yaml",
        {"name": "t", "teacher": {"backend": "llamacpp"}, "filter": [filter_options]},
    )
    out, rejected = tmp_path / "out.jsonl", tmp_path / "rejected.jsonl"
    result = run_stage(
        stage_named("filter"), load_config(config_path), source, out, rejected_path=rejected
    )
    by_id = {r["id"]: r for r in [*read_jsonl(out), *read_jsonl(rejected)]}
    return result, [by_id[r["id"]] for r in records]


ADD = "def add(a, b):\n    return a + b\n"
CORPUS = [
    record(
        "Write add(a, b) that returns the sum.",
        HUMANEVAL,
        fenced(ADD),
        fenced("def add(a, b):\n    return a - b\n"),
        fenced("def add(a, b):\n    return a + b / 0\n"),
        fenced("def add(a, b)\n    return a + b\n"),
        "The sum of a and b is a + b.",
    ),
    record(
        "Write is_even(n).",
        ["assert is_even(2)", "assert not is_even(3)"],  # MBPP's test_list
        fenced("def is_even(n):\n    return n % 2 == 0\n", "py"),
        fenced("def is_even(n):\n    return n % 2 == 1\n"),
    ),
    record(
        "Read two integers and print their sum.",
        {"cases": [{"input": "1 2\n", "output": "3\n"}, {"input": "10 -4\n", "output": "6"}]},
        fenced("a, b = map(int, input().split())\nprint(a + b)\n"),
        fenced("a, b = map(int, input().split())\nprint(a + b if a < 5 else a * b)\n"),
        fenced("print(int(input()) + 1)\n"),
    ),
    record(
        "Write add in JavaScript.",
        {
            "language": "node",
            "test": "const assert = require('assert');\nassert.strictEqual(add(2, 3), 5);",
        },
        fenced("function add(a, b) { return a + b; }", "javascript"),
        fenced("function add(a, b) { return a * b; }", "js"),
    ),
    record(
        "Double the number on stdin in bash.",
        {"language": "bash", "cases": [{"input": "21\n", "output": "42\n"}]},
        fenced("read n\necho $((n * 2))", "bash"),
    ),
    record(
        "Print the number of input lines with awk.",
        {"language": "awk", "inputs": ["a\nb\nc\n"], "outputs": ["3\n"]},
        fenced("END { print NR }", "awk"),
    ),
    record("Tell me a joke.", None, "Why did the chicken cross the road?"),
    record("Write something.", 42, fenced("print(1)")),
]
AWK = {"command": ["awk", "-f", "{file}"], "file": "main.awk", "fences": ["awk"]}


def test_verdicts_on_a_written_corpus(tmp_path: Path) -> None:
    result, records = run_execution(
        tmp_path, CORPUS, languages={"python": TAGGED_PYTHON, "awk": AWK}
    )
    humaneval, mbpp, stdio, node, bash, awk, no_tests, malformed = records

    score = humaneval["scores"]["execution"]
    assert score["passed"] == [True, False, False, False, False]
    passed, wrong, crash, syntax, no_code = score["results"]
    assert passed == {"status": "passed"}
    assert (wrong["status"], wrong["failed_test"]) == (
        "wrong_answer",
        "assert candidate(1, 2) == 3",
    )
    assert crash["status"] == "error"
    assert crash["reason"] == "ZeroDivisionError: division by zero"
    assert "ZeroDivisionError" in crash["stderr"]
    assert (syntax["status"], syntax["reason"]) == ("syntax_error", "SyntaxError: expected ':'")
    assert no_code == {"status": "no_code", "reason": "no python code block"}
    assert humaneval["selection"] == {"chosen": 0, "rejected": 1, "by": "execution"}
    pair, _ = pick_preference(humaneval, system=None)
    assert "a + b" in pair[0].example.response and "a - b" in (pair[0].example.rejected or "")

    assert mbpp["scores"]["execution"]["passed"] == [True, False]
    assert mbpp["scores"]["execution"]["results"][1]["failed_test"] == "assert is_even(2)"

    right, wrong_case, crashed = stdio["scores"]["execution"]["results"]
    assert right == {"status": "passed", "cases_passed": 2, "cases": 2}
    assert wrong_case == {
        "status": "wrong_answer",
        "reason": "stdout differs from the expected output on case 1",
        "expected": "6",
        "got": "-40\n",
        "failed_test": "case 1",
        "cases_passed": 1,
        "cases": 2,
    }
    assert crashed["status"] == "error" and crashed["failed_test"] == "case 0"
    assert crashed["reason"].startswith("ValueError: invalid literal for int()")

    assert node["scores"]["execution"]["language"] == "node"
    assert node["scores"]["execution"]["passed"] == [True, False]
    assert node["scores"]["execution"]["results"][1]["status"] == "wrong_answer"
    assert bash["scores"]["execution"]["passed"] == [True]
    assert awk["scores"]["execution"]["passed"] == [True]  # a language from the config alone

    assert no_tests["reject"] == {
        "filter": "execution",
        "reason": "no tests in `reference`",
        "score": None,
    }
    assert malformed["reject"]["reason"] == (
        "tests in `reference`: tests must be code, a list of asserts or an object, not int"
    )
    stats = result.stats["filters"]["execution"]
    assert (stats["kept"], stats["rejected"]) == (6, 2)
    assert stats["executed"] == 15 and stats["cached"] == 0  # no code: nothing to run


def test_a_rerun_executes_nothing_and_writes_the_same_records(tmp_path: Path) -> None:
    _, first = run_execution(tmp_path, CORPUS[:3])
    second_stats, second = run_execution(tmp_path, CORPUS[:3])
    assert second == first
    assert second_stats.stats["filters"]["execution"]["executed"] == 0
    assert second_stats.stats["filters"]["execution"]["cached"] == 11


def test_all_cases_runs_past_the_first_failure_and_min_passed_rejects(tmp_path: Path) -> None:
    _, [stdio] = run_execution(tmp_path, [CORPUS[2]], all_cases=True, min_passed=2)
    results = stdio["scores"]["execution"]["results"]
    assert [r.get("cases_passed") for r in results] == [2, 1, 0]
    assert stdio["reject"]["reason"] == (
        "1 of 3 samples pass the tests (min_passed 2); sample 1: wrong_answer: "
        "stdout differs from the expected output on case 1 at `case 1`"
    )


ATTACKS = {
    "loop": "while True:\n    pass\n",
    "memory": "hoard = []\nwhile True:\n    hoard.append(bytearray(16 * 1024 * 1024))\n",
    "fork bomb": (
        "import os, time\nwhile True:\n    try:\n        os.fork()\n"
        "    except OSError:\n        time.sleep(0.01)\n"
    ),
    "socket": "import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)\n",
    "write": (
        "refused = []\nfor path in {paths!r}:\n    try:\n        open(path, 'w').write('pwned')\n"
        "    except OSError as exc:\n        refused.append(exc.strerror)\n"
        "raise SystemExit('refused: ' + '; '.join(refused))\n"
    ),
}


@needs_bwrap
def test_attacks_are_stopped_and_the_machine_is_left_clean(tmp_path: Path) -> None:
    outside = [str(tmp_path / "escaped.txt"), str(Path.home() / f"{MARKER}.txt"), "/var/tmp/x"]
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        port = listener.getsockname()[1]
        attacks = [code.format(port=port, paths=outside) for code in ATTACKS.values()]
        corpus = [
            record(
                "Write add(a, b).",
                HUMANEVAL,
                *(fenced(code + ADD) for code in attacks),
                fenced(ADD),
            )
        ]
        limits = {"wall_s": 2, "cpu_s": 2, "memory_mb": 256, "processes": 16}
        started = time.monotonic()
        result, [attacked] = run_execution(tmp_path, corpus, limits=limits, workers=2)
        elapsed = time.monotonic() - started
        with pytest.raises(BlockingIOError):
            listener.accept()  # no connection was made
    statuses = [r["status"] for r in attacked["scores"]["execution"]["results"]]
    assert statuses == ["timeout", "memory_limit", "timeout", "error", "error", "passed"]
    _, memory, _, sock, write, _ = attacked["scores"]["execution"]["results"]
    assert memory["reason"] == "ran out of memory: MemoryError"
    assert "ConnectionRefusedError" in sock["reason"] or "unreachable" in sock["reason"]
    assert "Read-only file system" in write["reason"]
    assert attacked["selection"]["chosen"] == 5
    assert processes_with(MARKER) == []
    assert not [path for path in outside if Path(path).exists()]
    # five samples, two workers: three rounds of at most the 2 s wall clock each, plus start-up
    assert elapsed < 20
    isolation = result.stats["filters"]["execution"]["isolation"]
    assert (isolation["level"], isolation["weaker"]) == ("bubblewrap", False)


def test_the_rlimits_fallback_is_reported_as_weaker_isolation(tmp_path: Path) -> None:
    result, [humaneval] = run_execution(tmp_path, [CORPUS[0]], isolation="rlimits")
    assert humaneval["scores"]["execution"]["passed"][0] is True
    assert humaneval["scores"]["execution"]["isolation"] == "rlimits"
    isolation = result.stats["filters"]["execution"]["isolation"]
    assert isolation["level"] == "rlimits" and isolation["weaker"] is True
    assert "network: not isolated" in isolation["missing"]


def test_records_without_tests_pass_when_configured(tmp_path: Path) -> None:
    _, [joke] = run_execution(tmp_path, [CORPUS[6]], missing="keep")
    assert "reject" not in joke and "execution" not in joke.get("scores", {})


def test_the_cli_warns_about_weaker_isolation(tmp_path: Path, cli_env: dict) -> None:
    source = tmp_path / "in.jsonl"
    write_jsonl(source, [CORPUS[1]])
    config = write_config(
        tmp_path / "config.yaml",
        {
            "name": "t",
            "teacher": {"backend": "llamacpp"},
            "filter": [{"type": "execution", "isolation": "rlimits"}],
        },
    )
    done = subprocess.run(
        [sys.executable, "-m", "distillpipe", "filter", "-c", str(config), "-i", str(source),
         "-o", str(tmp_path / "out.jsonl")],
        capture_output=True, text=True, env=cli_env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "execution: weaker isolation (rlimits): network: not isolated" in done.stderr
