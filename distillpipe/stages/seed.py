"""The ``seed`` stage: load seed tasks, then grow them with Self-Instruct (Wang et al. 2022).

Round after round, each request shows the teacher a few human seed tasks and
a few machine-generated ones (sampled from ``config.seed``, the round and the
request number, then shuffled) and asks for the rest of a numbered list. Every
task read out of the completions runs the post-filters — length, keyword
blacklist, banned prefixes, first character, exact duplicates, ROUGE-L novelty
against the whole pool — and either joins the pool or goes to the rejected
file with its reason. Rounds go on until ``target`` new instructions are kept
or ``max_rounds`` is spent.

A round's requests depend only on the seeds and on the tasks kept in earlier
rounds, which themselves come from cached completions, so a rerun (or a
resumed run) asks byte-identical requests and the cache answers them.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, ClassVar

from distillpipe.config import Config, SelfInstructConfig
from distillpipe.instructions import CandidateChecks, Task, normalised, parse_tasks, stop_sequences
from distillpipe.novelty import NoveltyIndex
from distillpipe.prompts import PACKAGED, Prompts, prompts_for
from distillpipe.records import new_record
from distillpipe.seeds import load_seeds
from distillpipe.stages.base import Record, StageContext
from distillpipe.teachers.base import Request

FILTER_NAMES = ("length", "blacklist", "prefix", "format", "duplicate", "rouge_l")


class TaskListPrompter:
    """Builds one Self-Instruct request from the tasks it shows."""

    def __init__(self, section: SelfInstructConfig, mode: str, prompts: Prompts = PACKAGED) -> None:
        self.section, self.mode = section, mode
        self.template = prompts.template(f"self_instruct/{section.template}.{mode}.jinja")
        self.file_stops = (
            stop_sequences(f"self_instruct/{section.template}.stop.txt", prompts)
            if mode == "completion"
            else ()
        )

    def __call__(self, request_id: str, shown: list[Record]) -> Request:
        last_number = len(shown) + self.section.new_tasks_per_request
        tasks = [
            {
                "instruction": record["instruction"],
                "input": record.get("input", ""),
                "output": (record.get("meta") or {}).get("output", ""),
            }
            for record in shown
        ]
        text = self.template.render(
            tasks=tasks, instances=self.section.instances, last_number=last_number
        )
        if self.mode == "chat":
            messages = ({"role": "user", "content": text.strip()},)
            return Request(id=request_id, params=self.section.sampling_params(), messages=messages)
        # The list ends at the item after the last wanted one, as in Self-Instruct.
        stops = (*self.file_stops, f"\n{last_number + 1}.")
        # The prompt ends right after the next item's number: the model writes that item.
        prompt = text.rstrip()
        return Request(id=request_id, params=self.section.sampling_params(stops), prompt=prompt)


def shown_tasks(
    seeds: list[Record], machine: list[Record], section: SelfInstructConfig, rng: random.Random
) -> list[Record]:
    """Up to ``machine_tasks_per_prompt`` generated tasks, seeds for the rest, shuffled."""
    machine_count = min(section.machine_tasks_per_prompt, len(machine))
    shown = rng.sample(machine, machine_count)
    wanted = section.seed_tasks_per_prompt + section.machine_tasks_per_prompt - machine_count
    shown += rng.sample(seeds, min(wanted, len(seeds)))
    rng.shuffle(shown)
    return shown


class Pool:
    """Every instruction kept so far (seeds and generated), for the post-filters."""

    def __init__(self, section: SelfInstructConfig, ctx: StageContext) -> None:
        self.section, self.ctx = section, ctx
        self.checks = CandidateChecks(
            min_words=section.min_words,
            max_words=section.max_words,
            blacklist=section.blacklist,
            reject_prefixes=section.reject_prefixes,
            prompts=prompts_for(ctx.config),
        )
        self.index = NoveltyIndex()
        self.texts: list[str] = []
        self.seen: set[str] = set()
        self.counts = dict.fromkeys(("candidates", "kept", *FILTER_NAMES), 0)

    def add(self, instruction: str) -> None:
        self.index.add(instruction)
        self.texts.append(instruction)
        self.seen.add(normalised(instruction))

    def screen(self, task: Task, origin: dict[str, Any]) -> Record | None:
        """The task as a new record when it passes every post-filter, else None (rejected)."""
        self.counts["candidates"] += 1
        record = new_record(task.instruction, input=task.input or None, origin=origin)
        if task.output:
            record["meta"] = {"output": task.output}
        verdict = self.checks.verdict(task.instruction)
        score: float | None = None
        if verdict is None and normalised(task.instruction) in self.seen:
            verdict = ("duplicate", "the same instruction is already in the pool")
        if verdict is None:
            novel, match = self.index.check(task.instruction, self.section.rouge_threshold)
            score = match.score
            if not novel:
                verdict = (
                    "rouge_l",
                    f"ROUGE-L {match.score:.3f} >= {self.section.rouge_threshold} "
                    f"with {self.texts[match.index]!r}",
                )
        if verdict is not None:
            self.counts[verdict[0]] += 1
            self.ctx.reject(record, filter=verdict[0], reason=verdict[1], score=score)
            return None
        if match.index >= 0:
            nearest = {"instruction": self.texts[match.index], "rouge_l": match.score}
            record.setdefault("meta", {})["nearest"] = nearest
        self.counts["kept"] += 1
        self.add(task.instruction)
        return record


class SeedStage:
    name: ClassVar[str] = "seed"
    position: ClassVar[int] = 100
    section: ClassVar[str] = "self_instruct"
    config_sections: ClassVar[tuple[str, ...]] = ("seed", "teacher", "self_instruct")
    prompt_folders: ClassVar[tuple[str, ...]] = ("self_instruct",)

    @staticmethod
    def load_input(path: str | Path, config: Config) -> Iterator[Record]:
        """Seeds in any supported shape (JSONL, CSV, text, HF dataset), as records."""
        return load_seeds(path, _section(config).seeds)

    @staticmethod
    def expected_records(config: Config, records: int | None) -> int | None:
        """At most: the seeds, when written, and the target. (The calls it takes
        depend on how many tasks the filters keep, so no call count is expected.)"""
        section = _section(config)
        seeds = records if section.include_seeds else 0
        return None if seeds is None else seeds + section.target

    async def run(self, records: Iterator[Record], ctx: StageContext) -> AsyncIterator[Record]:
        section = _section(ctx.config)
        seeds = list(records)
        pool = Pool(section, ctx)
        for seed in seeds:
            pool.add(seed["instruction"])
            if section.include_seeds:
                yield seed
        machine: list[Record] = []
        rounds = requests = 0
        if section.target and seeds:
            dispatcher = ctx.dispatcher(section.teacher)
            prompter = TaskListPrompter(section, dispatcher.teacher.mode, prompts_for(ctx.config))
            leading_item = dispatcher.teacher.mode == "completion"
            while len(machine) < section.target and rounds < section.max_rounds:
                batch = []
                for number in range(section.requests_per_round):
                    rng = random.Random(f"{ctx.config.seed}:self_instruct:{rounds}:{number}")
                    shown = shown_tasks(seeds, machine, section, rng)
                    batch.append(prompter(f"self_instruct:{rounds}:{number}", shown))
                requests += len(batch)
                origin = {"stage": self.name, "round": rounds}
                for (completion,) in await dispatcher.resolve(batch):
                    truncated = completion.finish_reason == "length"
                    for task in parse_tasks(
                        completion.text, leading_item=leading_item, truncated=truncated
                    ):
                        if len(machine) >= section.target:
                            break
                        if (record := pool.screen(task, dict(origin))) is not None:
                            machine.append(record)
                            yield record
                rounds += 1
        ctx.stats["self_instruct"] = {
            "seeds": len(seeds),
            "generated": len(machine),
            "target": section.target,
            "rounds": rounds,
            "requests": requests,
            "filters": pool.counts,
        }


def _section(config: Config) -> SelfInstructConfig:
    return config.self_instruct or SelfInstructConfig()
