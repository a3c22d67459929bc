"""The batch journal (``<run dir>/batches/journal.jsonl``): which batches carry which calls.

A provider batch is paid for once, so the journal notes the *intent* to submit
(a fresh tag, the custom ids, the time), fsynced, before the create request
leaves; the batch id follows on a second line once the provider accepted it.
A kill between the two leaves an intent without a batch id: the resumed run
looks for that batch on the provider (``find`` in batch.py) and adopts what it
finds, or notes the intent as abandoned and submits its calls anew. One intent
stands for exactly one create request, so at most one batch is ever its own.

Lines (append-only, each fsynced; a line torn by a kill is skipped):

    {"tag": T, "backend": B, "created_at": unix seconds, "custom_ids": [...]}  intent
    {"tag": T, "batch_id": ID}                   the provider accepted it
    {"tag": T, "batch_id": ID, "adopted": true}  found on the provider after a kill
    {"tag": T, "abandoned": true}                not found there: it never got in
    {"batch_id": ID, "custom_ids": [...]}        a journal from before intents
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

JOURNAL = "journal.jsonl"


@dataclass
class Submission:
    """One intent to submit a batch, and the batches the provider holds for it."""

    tag: str
    custom_ids: list[str]
    created_at: float
    batch_ids: list[str] = field(default_factory=list)
    abandoned: bool = False

    @property
    def signature(self) -> str:
        """The count and a hash of the sorted custom ids (what fits a batch's metadata)."""
        digest = hashlib.sha256("\n".join(sorted(self.custom_ids)).encode()).hexdigest()
        return f"{len(self.custom_ids)}:sha256:{digest[:32]}"


@dataclass
class ResumePlan:
    active: dict[str, set[str]]  # batch id -> the pending custom ids it carries
    unresolved: list[tuple[Submission, set[str]]]  # intents with no batch id yet
    known_batches: set[str]  # every batch id the journal names


class BatchJournal:
    def __init__(self, folder: Path) -> None:
        self.path = folder / JOURNAL

    def entries(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        rows = []
        for line in self.path.read_bytes().splitlines():
            try:
                rows.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                continue  # a line torn by a kill mid-write: that step never finished
        return rows

    def add(self, entry: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a+b") as stream:
            # after a torn last line, start a new one: glued on, this line would be lost too
            torn = stream.tell() > 0 and not _ends_with_newline(stream)
            stream.write((b"\n" if torn else b"") + orjson.dumps(entry) + b"\n")
            stream.flush()
            os.fsync(stream.fileno())

    def intend(self, backend: str, custom_ids: list[str]) -> Submission:
        """Note the intent to submit ``custom_ids`` as one batch (before the request leaves)."""
        intent = Submission(uuid.uuid4().hex, list(custom_ids), time.time())
        self.add(
            {
                "tag": intent.tag,
                "backend": backend,
                "created_at": intent.created_at,
                "custom_ids": intent.custom_ids,
            }
        )
        return intent

    def note_batch(self, intent: Submission, batch_id: str, *, adopted: bool = False) -> None:
        entry: dict[str, Any] = {"tag": intent.tag, "batch_id": batch_id}
        if adopted:
            entry["adopted"] = True
        self.add(entry)
        intent.batch_ids.append(batch_id)

    def abandon(self, intent: Submission) -> None:
        self.add({"tag": intent.tag, "abandoned": True})
        intent.abandoned = True

    def submissions(self) -> list[Submission]:
        """Every intent in journal order, with the batches noted for it."""
        ordered: list[Submission] = []
        by_tag: dict[str, Submission] = {}
        for entry in self.entries():
            tag = entry.get("tag")
            if tag is None:
                if "batch_id" in entry and "custom_ids" in entry:
                    ordered.append(Submission("", entry["custom_ids"], 0.0, [entry["batch_id"]]))
            elif "custom_ids" in entry:
                by_tag[tag] = Submission(tag, entry["custom_ids"], entry["created_at"])
                ordered.append(by_tag[tag])
            elif (intent := by_tag.get(tag)) is not None:
                if "batch_id" in entry and entry["batch_id"] not in intent.batch_ids:
                    intent.batch_ids.append(entry["batch_id"])
                intent.abandoned = intent.abandoned or bool(entry.get("abandoned"))
        return ordered


def plan_resume(submissions: list[Submission], pending: set[str]) -> ResumePlan:
    """For each pending custom id, the latest intent that carries it (a retry round's
    intent comes after the batch whose items failed): its batches to poll, or, when the
    provider never confirmed it, the intent to look for."""
    latest: dict[str, Submission] = {}
    for intent in submissions:
        if intent.abandoned and not intent.batch_ids:
            continue  # never reached the provider
        for cid in intent.custom_ids:
            if cid in pending:
                latest[cid] = intent
    active: dict[str, set[str]] = {}
    unresolved: dict[str, tuple[Submission, set[str]]] = {}
    for cid, intent in latest.items():
        if intent.batch_ids:
            for batch_id in intent.batch_ids:
                active.setdefault(batch_id, set()).add(cid)
        else:
            unresolved.setdefault(intent.tag, (intent, set()))[1].add(cid)
    known = {batch_id for intent in submissions for batch_id in intent.batch_ids}
    return ResumePlan(active, list(unresolved.values()), known)


def _ends_with_newline(stream: Any) -> bool:
    stream.seek(-1, os.SEEK_END)
    return stream.read(1) == b"\n"
