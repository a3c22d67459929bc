"""The ``evolve`` stage: Evol-Instruct (Xu et al. 2023, WizardLM).

Records are evolved a batch at a time for ``rounds`` rounds. In each round
every lineage's newest instruction gets one operator, drawn with the
configured weights from ``config.seed``, the instruction's id and the round:
an in-depth rewrite (add constraints, deepen, concretize, increase reasoning
steps, complicate input) or an in-breadth one (a new, rarer task in the same
domain). The rewrite then faces the paper's elimination:

- no information gain: unchanged text, or the teacher (or a ROUGE-L
  similarity check, when configured) finds it equal to its parent;
- the teacher's answer to it says "sorry" and is short;
- it is only punctuation and stop words;
- it copies words of the evolving prompt ("given prompt", "#Rewritten Prompt#").

A failed evolution goes to the rejected file with its reason and its parent
stays the lineage's newest instruction for the next round. Every survivor
carries its lineage in ``origin: {stage, parent_id, operator, round}``.
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import AsyncIterator, Iterator
from typing import ClassVar

from distillpipe.config import EVOLVE_OPERATORS, Config, EliminationConfig, EvolveConfig
from distillpipe.instructions import stop_sequences
from distillpipe.novelty import rouge_l
from distillpipe.prompts import PACKAGED, Prompts, prompts_for
from distillpipe.records import new_record, normalise_text, user_prompt
from distillpipe.stages.base import Record, StageContext
from distillpipe.teachers.base import Completion, Request, SamplingParams

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
# Fields of a parent's meta that describe the parent's own text (seed outputs, novelty).
_PARENT_ONLY_META = ("output", "nearest")
Verdict = tuple[str, str] | None  # (filter, reason) of a failed evolution


class EvolvePrompter:
    """The three requests of an evolution: rewrite, equality check and answer."""

    def __init__(self, section: EvolveConfig, mode: str, prompts: Prompts = PACKAGED) -> None:
        self.section, self.mode, self.prompts = section, mode, prompts
        completion = mode == "completion"
        self.rewrite_params = section.sampling_params(
            stop_sequences("evolve/rewrite.stop.txt", prompts) if completion else ()
        )
        checks = section.elimination
        self.equality_params = checks.equality_params(("\n",) if completion else ())
        self.answer_params = checks.answer_params(
            prompts.lines("evolve/answer.stop.txt") if completion else ()
        )

    def _request(
        self, request_id: str, text: str, params: SamplingParams, *, open_line: bool = False
    ) -> Request:
        """``open_line``: a completion prompt that ends at a label ("Harder task:") is
        continued on the label's line, so the template's final newline is dropped."""
        if self.mode == "chat":
            messages = ({"role": "user", "content": text.strip()},)
            return Request(id=request_id, params=params, messages=messages)
        return Request(id=request_id, params=params, prompt=text.rstrip() if open_line else text)

    def rewrite_prompt(self, operator: str, prompt: str) -> str:
        if operator == "breadth":
            return self.prompts.render(f"evolve/breadth.{self.mode}.jinja", prompt=prompt)
        method = self.prompts.text(f"evolve/operators/{operator}.txt").strip()
        return self.prompts.render(f"evolve/depth.{self.mode}.jinja", prompt=prompt, method=method)

    def rewrite(self, parent: Record, operator: str, round: int) -> Request:
        text = self.rewrite_prompt(operator, user_prompt(parent))
        request_id = f"evolve:{parent['id']}:{round}:rewrite"
        return self._request(request_id, text, self.rewrite_params, open_line=True)

    def equality(self, parent: Record, child: Record) -> Request:
        text = self.prompts.render(
            f"evolve/equality.{self.mode}.jinja",
            parent=user_prompt(parent),
            child=child["instruction"],
        )
        request_id = f"evolve:{child['id']}:equality"
        return self._request(request_id, text, self.equality_params, open_line=True)

    def answer(self, child: Record) -> Request:
        if self.mode == "chat":
            text = child["instruction"]
        else:
            text = self.prompts.render(
                "evolve/answer.completion.jinja", instruction=child["instruction"]
            )
        return self._request(f"evolve:{child['id']}:answer", text, self.answer_params)


def choose_operator(section: EvolveConfig, seed: int, record_id: str, round: int) -> str:
    rng = random.Random(f"{seed}:evolve:{record_id}:{round}")
    names = [name for name, weight in section.operators.items() if weight > 0]
    return rng.choices(names, weights=[section.operators[name] for name in names])[0]


def rewritten_text(completion: Completion) -> str:
    text = completion.text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'`":
        text = text[1:-1].strip()
    return text


class Elimination:
    """Evol-Instruct's reasons to drop an evolved instruction."""

    def __init__(self, checks: EliminationConfig, prompter: EvolvePrompter) -> None:
        self.checks = checks
        # The rewrite prompts' own words (worked examples, instructions) without a parent:
        # a rewrite found in them copies the evolving prompt instead of rewriting.
        self.prompt_texts = tuple(
            normalise_text(prompter.rewrite_prompt(operator, "")).lower()
            for operator in EVOLVE_OPERATORS
        )
        self.markers = tuple(m.lower() for m in prompter.prompts.lines("evolve/markers.txt"))
        self.stopwords = frozenset(
            w for w in prompter.prompts.lines("evolve/stopwords.txt") if not w.startswith("#")
        )

    def cheap(self, parent: Record, child_text: str, completion: Completion) -> Verdict:
        """The checks that need no teacher."""
        if not child_text:
            return "empty", "the rewrite is empty"
        if completion.finish_reason == "length":
            return "truncated", "the rewrite hit max_tokens"
        if normalise_text(child_text).lower() == normalise_text(user_prompt(parent)).lower():
            return "no_gain", "no information gain: the rewrite equals its parent"
        lowered = child_text.lower()
        for marker in self.markers:
            if marker in lowered:
                return "markers", f"copies {marker!r} from the evolving prompt"
        if any(normalise_text(lowered) in text for text in self.prompt_texts):
            return "markers", "copies a sentence of the evolving prompt"
        if all(word in self.stopwords for word in _WORD.findall(lowered)):
            return "stopwords", "only punctuation and stop words"
        if self.checks.equality == "similarity":
            score = rouge_l(user_prompt(parent), child_text)
            if score >= self.checks.similarity_threshold:
                return "no_gain", f"no information gain: ROUGE-L {score:.3f} with its parent"
        return None

    def equality(self, completion: Completion) -> Verdict:
        """The teacher's verdict: Equal fails, Different or anything unclear passes."""
        answer = completion.text.strip().lower()
        equal, different = answer.find("equal"), answer.find("different")
        if equal >= 0 and "not equal" not in answer and (different < 0 or equal < different):
            return "no_gain", "no information gain: the teacher finds it equal to its parent"
        return None

    def answer(self, completion: Completion) -> Verdict:
        words = len(completion.text.split())
        if "sorry" in completion.text.lower() and words < self.checks.sorry_max_words:
            return "sorry", f"the teacher's answer says sorry in {words} words"
        return None


class EvolveStage:
    name: ClassVar[str] = "evolve"
    position: ClassVar[int] = 200
    section: ClassVar[str] = "evolve"
    config_sections: ClassVar[tuple[str, ...]] = ("seed", "teacher", "evolve")
    prompt_folders: ClassVar[tuple[str, ...]] = ("evolve",)

    @staticmethod
    def expected_calls(config: Config, records: int) -> int:
        """At most: a rewrite per lineage and round, and the teacher's checks of each
        rewrite that passes the cheap ones."""
        section = _section(config)
        checks = section.elimination
        per_rewrite = 1 + (checks.equality == "teacher") + checks.answer_check
        return records * section.rounds * per_rewrite

    @staticmethod
    def expected_records(config: Config, records: int | None) -> int | None:
        return records if _section(config).output == "last" else None

    async def run(self, records: Iterator[Record], ctx: StageContext) -> AsyncIterator[Record]:
        section = _section(ctx.config)
        dispatcher = ctx.dispatcher(section.teacher)
        prompter = EvolvePrompter(section, dispatcher.teacher.mode, prompts_for(ctx.config))
        elimination = Elimination(section.elimination, prompter)
        stats = {
            "attempts": 0,
            "survived": 0,
            "operators": {name: {"tried": 0, "survived": 0} for name in section.operators},
        }
        seen: set[str] = set()
        while batch := list(itertools.islice(records, section.batch_size)):
            seen.update(record["id"] for record in batch)
            newest = list(batch)
            evolved: list[list[Record]] = [[] for _ in batch]
            for round in range(1, section.rounds + 1):
                operators = [
                    choose_operator(section, ctx.config.seed, parent["id"], round)
                    for parent in newest
                ]
                rewrites = await dispatcher.resolve(
                    [
                        prompter.rewrite(parent, operator, round)
                        for parent, operator in zip(newest, operators, strict=True)
                    ]
                )
                children: list[tuple[int, Record, Verdict]] = []
                for lineage, ((completion,), operator) in enumerate(
                    zip(rewrites, operators, strict=True)
                ):
                    parent, text = newest[lineage], rewritten_text(completion)
                    stats["attempts"] += 1
                    stats["operators"][operator]["tried"] += 1
                    child = self._child(parent, text or "(empty)", operator, round)
                    verdict = elimination.cheap(parent, text, completion)
                    if verdict is None and child["id"] in seen:
                        verdict = ("duplicate", "the same instruction is already in the output")
                    if verdict is None:
                        seen.add(child["id"])  # claimed, even if a teacher check fails it
                    children.append((lineage, child, verdict))
                checked = [(i, c) for i, c, verdict in children if verdict is None]
                requests = []
                for lineage, child in checked:
                    if section.elimination.equality == "teacher":
                        requests.append(prompter.equality(newest[lineage], child))
                    if section.elimination.answer_check:
                        requests.append(prompter.answer(child))
                answers = iter(await dispatcher.resolve(requests))
                late: dict[str, Verdict] = {}
                for _, child in checked:
                    verdict = None
                    if section.elimination.equality == "teacher":
                        verdict = elimination.equality(next(answers)[0])
                    if section.elimination.answer_check:
                        verdict = verdict or elimination.answer(next(answers)[0])
                    late[child["id"]] = verdict
                for lineage, child, verdict in children:
                    verdict = verdict or late.get(child["id"])
                    if verdict is not None:
                        ctx.reject(child, filter=verdict[0], reason=verdict[1])
                        continue
                    newest[lineage] = child
                    evolved[lineage].append(child)
                    stats["survived"] += 1
                    stats["operators"][child["origin"]["operator"]]["survived"] += 1
            for original, survivors in zip(batch, evolved, strict=True):
                for record in _kept(section, original, survivors):
                    yield record
        ctx.stats["evolve"] = {"rounds": section.rounds, **stats}

    @staticmethod
    def _child(parent: Record, text: str, operator: str, round: int) -> Record:
        origin = {"stage": "evolve", "parent_id": parent["id"], "operator": operator}
        return new_record(
            text,
            system=parent.get("system"),
            origin={**origin, "round": round},
            meta={
                k: v for k, v in (parent.get("meta") or {}).items() if k not in _PARENT_ONLY_META
            },
        )


def _kept(section: EvolveConfig, original: Record, survivors: list[Record]) -> list[Record]:
    if section.output == "all":
        return [original, *survivors]
    if section.output == "evolved":
        return survivors
    return [survivors[-1] if survivors else original]


def _section(config: Config) -> EvolveConfig:
    return config.evolve or EvolveConfig()
