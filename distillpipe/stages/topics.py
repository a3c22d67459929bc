"""The ``topics`` stage: a topic taxonomy grown by the teacher, then questions about its
leaves (GLAN, Li et al. 2024; NeMo's synthetic data pipelines).

From the configured ``subjects`` (or ``width`` subjects the teacher lists for a
``domain``), each level of the tree is asked, node by node, for ``width``
subtopics, ``depth`` levels down; then each leaf for ``questions_per_leaf``
questions whose kinds (a difficulty or a task type) are drawn from ``mix``,
seeded by the config seed and the leaf's path. Every answer is a list read by
``lists.py``; every candidate is screened against those kept before it at the
same level (and every question against every question and input record):
exact, ROUGE-L and MiniLM near duplicates go to the rejected file with the
text they repeat. A node left short of its quota is asked again with the next
sample index, up to ``max_attempts`` samples; one that never gets a usable
child stays a leaf.

Each question is a record whose ``origin.path`` is ``[subject, subtopic, ...]``;
the tree, with its counts, is saved as ``topic_tree.json`` beside the output.
Requests depend only on the config and on earlier cached answers, so a rerun
asks byte-identical requests and the cache answers them all. Input records
pass through first; ``distillpipe run`` needs no input when the run starts here.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, ClassVar

from pydantic import Field, field_validator, model_validator

from distillpipe.config import Config, SamplingConfig, StageOptions
from distillpipe.errors import ConfigError
from distillpipe.instructions import normalised, stop_sequences
from distillpipe.lists import ListLimits, list_items
from distillpipe.near_duplicates import NearDuplicateOptions, NearDuplicates
from distillpipe.prompts import Prompts, prompts_for
from distillpipe.records import new_record
from distillpipe.stages.base import Record, StageContext
from distillpipe.teachers.base import Completion, Request
from distillpipe.topic_tree import TREE_FILE, TopicNode, TopicTree, tree_path_for

TOPIC_LIMITS = ListLimits(max_chars=80, max_words=10)


class TopicsOptions(StageOptions, SamplingConfig):
    """The ``topics:`` section."""

    temperature: float = Field(0.8, ge=0.0, le=2.0)
    max_tokens: int = Field(256, ge=1)
    subjects: list[str] = Field(default_factory=list, description="the roots of the tree")
    domain: str | None = Field(
        None, description="what the data is about; without subjects the teacher lists them"
    )
    depth: int = Field(1, ge=0, le=3, description="levels of subtopics under the subjects")
    width: int = Field(5, ge=1, le=50, description="children asked for per node")
    questions_per_leaf: int = Field(3, ge=0, le=100)
    mix: dict[str, float] = Field(
        default_factory=lambda: {"easy": 1.0, "hard": 1.0},
        description="question kind (a difficulty or a task type) -> weight of its seeded draw",
    )
    max_attempts: int = Field(3, ge=1, le=20, description="samples asked at most per list")
    max_question_words: int = Field(80, ge=3)
    dedup: NearDuplicateOptions = Field(default_factory=NearDuplicateOptions)

    @field_validator("mix")
    @classmethod
    def _weights(cls, value: dict[str, float]) -> dict[str, float]:
        if not value or any(not kind.strip() for kind in value):
            raise ValueError("name at least one kind, each a non-empty word")
        if any(weight < 0 for weight in value.values()) or not sum(value.values()) > 0:
            raise ValueError("weights must be >= 0 with a positive sum")
        return value

    @model_validator(mode="after")
    def _roots(self) -> TopicsOptions:
        self.subjects = [subject.strip() for subject in self.subjects]
        if any(not subject for subject in self.subjects):
            raise ValueError("subjects: an empty subject")
        if not self.subjects and not (self.domain and self.domain.strip()):
            raise ValueError("give the tree's roots: `subjects: [...]` or a `domain: ...`")
        return self

    def optional_modules(self) -> dict[str, str]:
        return self.dedup.optional_modules()


def options_of(config: Config) -> TopicsOptions:
    options = config.section("topics")
    if options is None:
        raise ConfigError("topics: the config has no `topics:` section (subjects or domain)")
    return options


class ListPrompter:
    """Builds the request for one list (subjects, subtopics or questions) of ``count`` items."""

    def __init__(self, options: TopicsOptions, mode: str, prompts: Prompts) -> None:
        self.options, self.mode, self.prompts = options, mode, prompts
        self.stops = stop_sequences("topics/list.stop.txt", prompts) if mode == "completion" else ()

    def __call__(
        self, template: str, request_id: str, count: int, sample: int, **values: Any
    ) -> Request:
        text = self.prompts.render(
            f"topics/{template}.{self.mode}.jinja",
            count=count,
            domain=self.options.domain,
            **values,
        )
        if self.mode == "chat":
            messages = ({"role": "user", "content": text.strip()},)
            params = self.options.sampling_params()
            return Request(request_id, params, messages=messages, first_sample=sample)
        params = self.options.sampling_params((*self.stops, f"\n{count + 1}."))
        # the prompt ends at "1.": the model writes the first item on
        return Request(request_id, params, prompt=text.rstrip(), first_sample=sample)


def kinds_for(node: TopicNode, options: TopicsOptions, seed: int) -> dict[str, int]:
    """How many questions of each kind the leaf gets: seeded by the config seed and its path."""
    rng = random.Random(f"{seed}:topics:{'/'.join(node.path)}")
    names = list(options.mix)
    drawn = rng.choices(names, [options.mix[n] for n in names], k=options.questions_per_leaf)
    return {name: drawn.count(name) for name in names if name in drawn}


class TopicsStage:
    name: ClassVar[str] = "topics"
    position: ClassVar[int] = 50  # first: before seed (100), whose seeds it can write
    section: ClassVar[str] = "topics"
    config_sections: ClassVar[tuple[str, ...]] = ("seed", "teacher", "topics")
    prompt_folders: ClassVar[tuple[str, ...]] = ("topics",)
    needs_input: ClassVar[bool] = False
    side_files: ClassVar[tuple[str, ...]] = (TREE_FILE,)  # written beside the output
    Options = TopicsOptions

    @staticmethod
    def expected_records(config: Config, records: int | None) -> int | None:
        options = options_of(config)
        roots = len(options.subjects) or options.width
        return (records or 0) + roots * options.width**options.depth * options.questions_per_leaf

    async def run(self, records: Iterator[Record], ctx: StageContext) -> AsyncIterator[Record]:
        options = options_of(ctx.config)
        questions = NearDuplicates.from_options(options.dedup, options.dedup.embedder())
        inputs = []
        for record in records:
            inputs.append(record["instruction"])
            yield record
        questions.add(inputs)
        grower = TreeGrower(options, ctx, questions)
        tree = await grower.grow()
        for record in await grower.ask_questions(tree):
            yield record
        target = tree_path_for(ctx.output_path)
        if target is not None:
            tree.save(target)
        ctx.stats["topics"] = {
            **grower.counts,
            "subjects": len(tree.roots),
            "nodes": sum(1 for _ in tree.nodes()),
            "leaves": len(tree.leaves()),
        }


class TreeGrower:
    """Grows one tree, level by level, and asks its leaves for questions."""

    def __init__(self, options: TopicsOptions, ctx: StageContext, questions: NearDuplicates):
        self.options, self.ctx, self.questions = options, ctx, questions
        self.dispatcher = ctx.dispatcher()
        self.model = self.dispatcher.teacher.model
        self.prompter = ListPrompter(options, self.dispatcher.teacher.mode, prompts_for(ctx.config))
        self.leading_item = self.dispatcher.teacher.mode == "completion"
        self.encoder = questions.encoder
        self.counts = dict.fromkeys(("requests", "topics", "questions", "rejected"), 0)

    async def grow(self) -> TopicTree:
        tree = TopicTree.of(self.options.domain)
        names = NearDuplicates.from_options(self.options.dedup, self.encoder)
        if self.options.subjects:
            for subject, verdict in zip(
                self.options.subjects, names.screen(self.options.subjects), strict=True
            ):
                if verdict is None:
                    tree.root.child(subject)
                else:
                    self._reject(subject, (subject,), f"topics.{verdict.kind}", verdict)
        else:  # the teacher lists the domain's subjects
            await self._fill([tree.root], names)
        for depth in range(self.options.depth):
            names = NearDuplicates.from_options(self.options.dedup, self.encoder)
            await self._fill(tree.at_depth(depth), names)
        self.counts["topics"] = sum(1 for _ in tree.nodes())
        return tree

    async def _fill(self, nodes: list[TopicNode], names: NearDuplicates) -> None:
        """Ask each node for ``width`` children, again while it is short, screening each
        name against the node's own path and every name kept at this level."""
        width = self.options.width
        for attempt in range(self.options.max_attempts):
            short = [node for node in nodes if len(node.children) < width]
            if not short:
                return
            answers = await self._resolve([self._children_request(n, attempt) for n in short])
            for node, completion in zip(short, answers, strict=True):
                on_path = {normalised(part) for part in node.path}
                items = self._items(completion, TOPIC_LIMITS)
                fresh = [item for item in items if normalised(item) not in on_path]
                for item in items:
                    if normalised(item) in on_path:
                        node.dropped += 1
                        self._reject(item, (*node.path, item), "topics.parent", None)
                # a surplus past the width is not screened: neither kept nor rejected
                verdicts = names.screen(fresh, limit=width - len(node.children))
                for item, verdict in zip(fresh, verdicts, strict=False):
                    if verdict is not None:
                        node.dropped += 1
                        self._reject(item, (*node.path, item), f"topics.{verdict.kind}", verdict)
                    else:
                        node.child(item)

    def _children_request(self, node: TopicNode, attempt: int) -> Request:
        width = self.options.width
        if not node.path:
            return self.prompter("subjects", "topics:subjects", width, attempt)
        request_id = f"topics:subtopics:{'/'.join(node.path)}"
        return self.prompter("subtopics", request_id, width, attempt, path=node.path)

    async def ask_questions(self, tree: TopicTree) -> list[Record]:
        wanted = [
            (leaf, kind, count)
            for leaf in tree.leaves()
            for kind, count in kinds_for(leaf, self.options, self.ctx.config.seed).items()
        ]
        kept: list[list[Record]] = [[] for _ in wanted]
        limits = ListLimits(max_chars=8 * self.options.max_question_words,
                            max_words=self.options.max_question_words)  # fmt: skip
        for attempt in range(self.options.max_attempts):
            short = [i for i, (_, _, count) in enumerate(wanted) if len(kept[i]) < count]
            if not short:
                break
            requests = []
            for index in short:
                leaf, kind, count = wanted[index]
                request_id = f"topics:questions:{'/'.join(leaf.path)}:{kind}"
                requests.append(
                    self.prompter(
                        "questions", request_id, count, attempt, path=leaf.path, kind=kind
                    )
                )
            answers = await self._resolve(requests)
            for index, completion in zip(short, answers, strict=True):
                leaf, kind, count = wanted[index]
                items = self._items(completion, limits)
                # a surplus past the count is not screened: neither kept nor rejected
                verdicts = self.questions.screen(items, limit=count - len(kept[index]))
                for item, verdict in zip(items, verdicts, strict=False):
                    origin = {"stage": "topics", "path": list(leaf.path), "kind": kind,
                              "sample": attempt, "model": self.model}  # fmt: skip
                    if verdict is not None:
                        leaf.dropped += 1
                        self._reject(item, leaf.path, f"topics.question_{verdict.kind}", verdict)
                    else:
                        kept[index].append(new_record(item, origin=origin))
                        leaf.questions += 1
        self.counts["questions"] = sum(len(group) for group in kept)
        return [record for group in kept for record in group]

    async def _resolve(self, requests: Sequence[Request]) -> list[Completion]:
        self.counts["requests"] += len(requests)
        return [group[0] for group in await self.dispatcher.resolve(requests)]

    def _items(self, completion: Completion, limits: ListLimits) -> list[str]:
        return list_items(
            completion.text,
            limits=limits,
            truncated=completion.finish_reason == "length",
            leading_item=self.leading_item,
        )

    def _reject(self, text: str, path: Sequence[str], kind: str, verdict: Any) -> None:
        self.counts["rejected"] += 1
        origin = {"stage": "topics", "path": list(path), "model": self.model}
        reason = verdict.reason if verdict is not None else "repeats a topic on its own path"
        score = round(verdict.score, 4) if verdict is not None else None
        self.ctx.reject(new_record(text, origin=origin), filter=kind, reason=reason, score=score)
