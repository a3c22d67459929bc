"""Execution: run each sample's code against the record's tests, in a sandbox.

The code comes from each response's fenced blocks for the language (the last
block, or all of them joined; ``extract: whole`` takes the whole text). The
tests come from the record's ``field`` (default ``reference``) in any shape
``code_tests.py`` reads: assert code with an optional HumanEval entry point,
or stdin → expected-stdout cases. Each run goes through ``sandbox/``
(bubblewrap where it works, else rlimits — reported in the run's stats as
weaker isolation), a worker pool sized to the cores, and a SQLite result
cache, so a rerun executes nothing again.

``scores.execution``: ``{passed: [true, false, ...], results: [{status,
reason?, failed_test?, stderr?, ...}], language, isolation}``. A record is
kept when at least ``min_passed`` samples pass; ``selection.chosen`` is a
passing sample and ``selection.rejected`` a failing one, so DPO pairs come
out passing-vs-failing. A record without tests is rejected with that reason
(or kept, with ``missing: keep``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from distillpipe.cache import default_cache_dir
from distillpipe.filters.base import Filter, FilterOptions, Record, Verdict, verified_selection
from distillpipe.filters.code_tests import (
    AssertProgram,
    CodeTests,
    Compare,
    assert_program,
    case_program,
    failing_line,
    failure,
    parse_tests,
    same_output,
    shown,
)
from distillpipe.filters.codeblocks import extract_code
from distillpipe.filters.fields import field_values
from distillpipe.sandbox.base import Isolation, Limits, Outcome, Program
from distillpipe.sandbox.cache import FILE_NAME, ExecutionCache
from distillpipe.sandbox.languages import Language, language_named, languages
from distillpipe.sandbox.pool import ExecutionPool, IsolationChoice, choose_runner


class ExecutionOptions(FilterOptions):
    type: str = "execution"
    field: str = Field("reference", description="where a record keeps its tests (a dot path)")
    language: str = Field("python", description="when the tests do not name one")
    extract: Literal["fenced", "whole"] = Field("fenced", description="code blocks or all text")
    blocks: Literal["last", "all"] = Field("last", description="fenced: the last block or all")
    compare: Compare = Field("lines", description="stdout vs expected: exact, lines, tokens")
    all_cases: bool = Field(False, description="run every case, not stop at the first failure")
    min_passed: int = Field(1, ge=1, description="samples that must pass to keep the record")
    missing: Literal["reject", "keep"] = Field("reject", description="records without tests")
    isolation: IsolationChoice = Field("auto", description="auto: bubblewrap, else rlimits")
    expose: list[str] = Field(
        default_factory=list, description="folders under a home to bind back read-only"
    )
    limits: Limits = Field(default_factory=Limits)
    languages: dict[str, Language] = Field(
        default_factory=dict, description="more languages, or overrides of python/node/bash"
    )
    workers: int | None = Field(None, ge=1, description="parallel runs; default: the cores")
    cache: bool = Field(True, description="reuse results of identical runs")
    batch_size: int = Field(64, ge=1)

    def cannot_judge_samples(self) -> str | None:
        return None


class ExecutionFilter(Filter):
    type: ClassVar[str] = "execution"
    Options = ExecutionOptions
    options: ExecutionOptions

    def __init__(self, options: FilterOptions, config: Any = None) -> None:
        super().__init__(options, config)
        self.languages = languages(self.options.languages)
        language_named(self.options.language, self.languages)
        self._pool: ExecutionPool | None = None
        self._isolation: Isolation | None = None
        self.executed = self.cache_hits = 0

    def load(self) -> ExecutionPool:
        if self._pool is None:
            runner, self._isolation = choose_runner(self.options.isolation, self.options.expose)
            self._pool = ExecutionPool(runner, self._cache(), self.options.workers)
        return self._pool

    def _cache(self) -> ExecutionCache | None:
        settings = getattr(self.config, "cache", None)
        if not self.options.cache or (settings is not None and not settings.enabled):
            return None
        folder = Path(settings.path).parent if settings is not None and settings.path else None
        return ExecutionCache((folder or default_cache_dir()) / FILE_NAME)

    def score(self, records: Sequence[Record]) -> list[Any]:
        pool = self.load()
        assert self._isolation is not None
        plans = [self._plan(record) for record in records]
        samples = [sample for plan in plans if isinstance(plan, list) for sample in plan]
        # one round per case: every sample's next run goes to the pool together
        while jobs := [(s, job) for s in samples if (job := s.next_job()) is not None]:
            outcomes = pool.run_many([job for _, job in jobs])
            for (sample, _), outcome in zip(jobs, outcomes, strict=True):
                sample.record_outcome(outcome)
                self.executed += not outcome.cached
                self.cache_hits += outcome.cached
        scores: list[Any] = []
        for plan in plans:
            if not isinstance(plan, list):
                scores.append(plan)
                continue
            results = [sample.result() for sample in plan]
            scores.append(
                {
                    "passed": [r["status"] == "passed" for r in results],
                    "results": results,
                    "language": plan[0].language_name if plan else self.options.language,
                    "isolation": self._isolation.level,
                }
            )
        return scores

    def _plan(self, record: Record) -> list[_Sample] | dict[str, Any] | None:
        found = field_values(record, self.options.field)
        if not found:
            return None
        try:
            spec = parse_tests(found[0])
            name = spec.language or self.options.language
            language = language_named(name, self.languages)
        except Exception as exc:  # ValueError, ConfigError: a sentence about this record
            return {"invalid": f"tests in `{self.options.field}`: {exc}"}
        return [
            _Sample(response.get("text") or "", spec, name, language, self.options)
            for response in record.get("responses") or []
        ]

    def value(self, score: Any) -> float | None:
        if not isinstance(score, dict) or not score.get("passed"):
            return None
        return sum(score["passed"]) / len(score["passed"])

    def passing(self, score: Any) -> list[bool] | None:
        if score is None or "invalid" in score:
            return None
        return list(score["passed"])

    def decide(self, record: Record, score: Any) -> Verdict:
        where = f"`{self.options.field}`"
        if score is None:
            if self.options.missing == "keep":
                return Verdict.kept()
            return Verdict.rejected(f"no tests in {where}")
        if "invalid" in score:
            return Verdict.rejected(score["invalid"], score)
        passed, results = score["passed"], score["results"]
        if not passed:
            return Verdict.rejected("no responses to run", score)
        count = sum(passed)
        if count < self.options.min_passed:
            first = next(i for i, ok in enumerate(passed) if not ok)
            detail = results[first]
            at = f" at `{detail['failed_test']}`" if detail.get("failed_test") else ""
            reason = (
                f"{count} of {len(passed)} samples pass the tests (min_passed "
                f"{self.options.min_passed}); sample {first}: {detail['status']}: "
                f"{detail.get('reason', '')}{at}"
            )
            return Verdict.rejected(reason, score)
        ran = [r["status"] != "no_code" for r in results]
        return Verdict.kept(score, verified_selection(record, passed, ran, self.name))

    def stats(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"executed": self.executed, "cached": self.cache_hits}
        if self._isolation is not None:
            extra["isolation"] = self._isolation.to_json()
        return extra

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None


class _Sample:
    """One response's code against the tests: its next run, round by round, and its verdict."""

    def __init__(
        self, text: str, spec: CodeTests, language_name: str, language: Language, options: Any
    ) -> None:
        self.spec, self.language_name, self.language = spec, language_name, language
        self.options: ExecutionOptions = options
        self.limits: Limits = options.limits
        self.code = extract_code(text, language.fences, options.extract, options.blocks)
        self.failed: dict[str, Any] | None = None
        self.runs = self.cases_passed = 0
        self.source = ""
        self.asserts: AssertProgram | None = None
        if self.code is None:
            self.failed = {"status": "no_code", "reason": self._no_code_reason()}
        elif spec.cases:
            self.source = case_program(self.code, spec)
        else:
            self.asserts = assert_program(self.code, spec, language.check)
            self.source = self.asserts.source

    def _no_code_reason(self) -> str:
        if self.options.extract == "whole":
            return "the response is empty"
        fence = self.language.fences[0] if self.language.fences else "fenced"
        return f"no {fence} code block"

    def next_job(self) -> tuple[Program, Limits] | None:
        """The run this sample needs next, or None when it is done."""
        if self.code is None or (self.failed is not None and not self.options.all_cases):
            return None
        total = len(self.spec.cases) if self.spec.cases else 1
        if self.runs >= total:
            return None
        stdin = self.spec.cases[self.runs][0] if self.spec.cases else ""
        argv = self.language.argv("{dir}", self.limits.memory_mb)
        files = ((self.language.file, self.source),)
        return Program(argv, files, stdin, self.language.address_space_mb), self.limits

    def record_outcome(self, outcome: Outcome) -> None:
        index, self.runs = self.runs, self.runs + 1
        problem = failure(outcome, self.limits)
        if self.asserts is not None:
            if problem is not None:
                line = failing_line(outcome.stderr, self.language.file, self.asserts)
                if line:
                    problem["failed_test"] = line
        else:
            expected = self.spec.cases[index][1]
            if problem is None and not same_output(expected, outcome.stdout, self.options.compare):
                problem = {
                    "status": "wrong_answer",
                    "reason": f"stdout differs from the expected output on case {index}",
                    "expected": shown(expected),
                    "got": shown(outcome.stdout),
                }
            if problem is None:
                self.cases_passed += 1
            else:
                problem["failed_test"] = f"case {index}"
        if problem is not None and self.failed is None:
            self.failed = problem

    def result(self) -> dict[str, Any]:
        verdict = dict(self.failed or {"status": "passed"})
        if self.spec.cases and self.code is not None:
            verdict["cases_passed"] = self.cases_passed
            verdict["cases"] = len(self.spec.cases)
        return verdict
