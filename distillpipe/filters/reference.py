"""Reference: compare each sample's final answer with the record's known answer.

The reference comes from the first of ``field`` (one dot path or a list of
them: ``reference``, ``answer``, ``output``, ``meta.output``, a seed's
``instances[].output`` — any of several listed values may match) that the
record has; an object there gives its ``answer``. Answers are extracted and
compared as ``equivalence.py`` describes (math-verify for mathematics, the
project's normaliser for plain numbers, exact and normalised strings for the
rest).

``scores.reference``: ``{correct: [true, false, ...], answers: [...],
matched_by: ["math", null, ...], reference}``. A record is kept when at least
``min_correct`` samples are correct; ``selection.chosen`` is a correct sample
and ``selection.rejected`` a wrong one (one that answered, when there is
one), so DPO pairs come out verified-vs-wrong. A record without a reference
is rejected with that reason (``missing: keep`` passes it) — never guessed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

from pydantic import Field

from distillpipe.filters.base import Filter, FilterOptions, Record, Verdict, verified_selection
from distillpipe.filters.equivalence import Shape, equivalent, extract_final, reference_answer
from distillpipe.filters.fields import field_values


class ReferenceOptions(FilterOptions):
    type: str = "reference"
    field: str | list[str] = Field(
        "reference", description="dot path(s) to the known answer; the first present is used"
    )
    reference_format: Shape = Field("auto", description="how to read the reference value")
    answer_format: Shape = Field("auto", description="how to find a sample's final answer")
    min_correct: int = Field(1, ge=1, description="correct samples needed to keep the record")
    missing: Literal["reject", "keep"] = Field("reject", description="records with no reference")
    batch_size: int = Field(64, ge=1)

    def cannot_judge_samples(self) -> str | None:
        return None

    @property
    def fields(self) -> list[str]:
        return [self.field] if isinstance(self.field, str) else list(self.field)


class ReferenceFilter(Filter):
    type: ClassVar[str] = "reference"
    Options = ReferenceOptions
    options: ReferenceOptions

    def score(self, records: Sequence[Record]) -> list[Any]:
        return [self._score(record) for record in records]

    def references(self, record: Record) -> list[str]:
        for path in self.options.fields:
            values = field_values(record, path)
            values = [v.get("answer") if isinstance(v, dict) else v for v in values]
            answers = [reference_answer(v, self.options.reference_format) for v in values]
            if found := [a for a in answers if a]:
                return list(dict.fromkeys(found))
        return []

    def _score(self, record: Record) -> dict[str, Any] | None:
        references = self.references(record)
        if not references:
            return None
        answers, matched_by = [], []
        for response in record.get("responses") or []:
            answer = extract_final(response.get("text") or "", self.options.answer_format)
            method = next(
                (m for ref in references if (m := equivalent(ref, answer)) is not None), None
            )
            answers.append(answer)
            matched_by.append(method)
        return {
            "correct": [method is not None for method in matched_by],
            "answers": answers,
            "matched_by": matched_by,
            "reference": references[0] if len(references) == 1 else references,
        }

    def value(self, score: Any) -> float | None:
        if not isinstance(score, dict) or not score["correct"]:
            return None
        return sum(score["correct"]) / len(score["correct"])

    def passing(self, score: Any) -> list[bool] | None:
        return None if score is None else list(score["correct"])

    def decide(self, record: Record, score: Any) -> Verdict:
        if score is None:
            if self.options.missing == "keep":
                return Verdict.kept()
            where = " or ".join(f"`{path}`" for path in self.options.fields)
            return Verdict.rejected(f"no reference answer in {where}")
        correct, answers = score["correct"], score["answers"]
        if not correct:
            return Verdict.rejected("no responses to check", score)
        count = sum(correct)
        if count < self.options.min_correct:
            shown = ", ".join("none" if a is None else f"`{a}`" for a in answers[:4])
            more = ", …" if len(answers) > 4 else ""
            reason = (
                f"{count} of {len(correct)} samples match the reference "
                f"{_quoted(score['reference'])} (min_correct {self.options.min_correct}); "
                f"answers: {shown}{more}"
            )
            return Verdict.rejected(reason, score)
        answered = [a is not None for a in answers]
        return Verdict.kept(score, verified_selection(record, correct, answered, self.name))


def _quoted(reference: str | list[str]) -> str:
    references = [reference] if isinstance(reference, str) else reference
    return " or ".join(f"`{r}`" for r in references)
