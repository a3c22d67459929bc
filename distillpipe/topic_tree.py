"""The topic taxonomy the ``topics`` stage grows: subjects, their subtopics, and so on.

Each node knows its path from the subject down (``origin.path`` of the
questions written about it), its children, how many questions were kept at it
and how many candidates (names or questions) were dropped there. The tree is
saved as ``topic_tree.json`` beside the stage's output (in a run directory:
the run directory), and the report draws it with its counts per branch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from distillpipe.errors import InputError
from distillpipe.io import atomic_write_bytes

TREE_FILE = "topic_tree.json"
FORMAT = 1


@dataclass
class TopicNode:
    name: str
    path: tuple[str, ...]
    children: list[TopicNode] = field(default_factory=list)
    questions: int = 0  # questions kept about this node
    dropped: int = 0  # candidate children or questions rejected here

    def child(self, name: str) -> TopicNode:
        node = TopicNode(name, (*self.path, name))
        self.children.append(node)
        return node

    def walk(self) -> Iterator[TopicNode]:
        """This node and every node under it, depth first, in order."""
        yield self
        for child in self.children:
            yield from child.walk()

    @property
    def total_questions(self) -> int:
        return sum(node.questions for node in self.walk())

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": list(self.path),
            "questions": self.questions,
            "dropped": self.dropped,
            "children": [child.as_dict() for child in self.children],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TopicNode:
        return cls(
            str(data["name"]),
            tuple(str(part) for part in data["path"]),
            [cls.from_dict(child) for child in data.get("children") or []],
            int(data.get("questions", 0)),
            int(data.get("dropped", 0)),
        )


@dataclass(frozen=True, slots=True)
class BranchCount:
    """One row of the report's tree: a node, its depth and what its branch holds."""

    path: tuple[str, ...]
    depth: int  # 0 for a subject
    questions: int  # in the whole branch
    leaves: int
    dropped: int  # at this node itself


@dataclass
class TopicTree:
    """The subjects under a root node named for the domain (path ``()``: the node the
    teacher lists subjects for when the config names a domain instead of subjects)."""

    root: TopicNode = field(default_factory=lambda: TopicNode("", ()))

    @classmethod
    def of(cls, domain: str | None, subjects: Sequence[str] = ()) -> TopicTree:
        tree = cls(TopicNode(domain or "", ()))
        for subject in subjects:
            tree.root.child(subject)
        return tree

    @property
    def domain(self) -> str | None:
        return self.root.name or None

    @property
    def roots(self) -> list[TopicNode]:
        return self.root.children

    def nodes(self) -> Iterator[TopicNode]:
        """Every node under the root, depth first, in order."""
        for subject in self.roots:
            yield from subject.walk()

    def leaves(self) -> list[TopicNode]:
        return [node for node in self.nodes() if not node.children]

    def at_depth(self, depth: int) -> list[TopicNode]:
        """The nodes ``depth`` levels under the subjects (0: the subjects)."""
        return [node for node in self.nodes() if len(node.path) == depth + 1]

    def branch_counts(self) -> list[BranchCount]:
        """Every node, depth first, with the questions and leaves of its branch."""
        return [
            BranchCount(
                node.path,
                len(node.path) - 1,
                node.total_questions,
                sum(1 for n in node.walk() if not n.children),
                node.dropped,
            )
            for node in self.nodes()
        ]

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "domain": self.domain,
            "dropped": self.root.dropped,
            "subjects": [subject.as_dict() for subject in self.roots],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TopicTree:
        subjects = [TopicNode.from_dict(s) for s in data.get("subjects") or []]
        root = TopicNode(data.get("domain") or "", (), subjects, 0, int(data.get("dropped", 0)))
        return cls(root)

    def save(self, path: Path) -> None:
        """Atomically, as indented JSON: a rerun that grows the same tree writes the same bytes."""
        atomic_write_bytes(path, orjson.dumps(self.as_dict(), option=orjson.OPT_INDENT_2) + b"\n")

    @classmethod
    def load(cls, path: Path) -> TopicTree:
        try:
            return cls.from_dict(orjson.loads(path.read_bytes()))
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{path}: not a topic tree ({exc})") from None


def tree_path_for(output: Path | None) -> Path | None:
    """Where a topics stage writing ``output`` saves its tree (None for stdout)."""
    return None if output is None else output.parent / TREE_FILE
