"""Execution results, cached in SQLite so that a rerun does not execute again.

The key is the algorithm-prefixed sha256 of the canonical JSON of
(program files, command, stdin, limits, isolation level): change any of them
and the program runs again. The table lives in its own file beside the
response cache (``executions.sqlite``), migrated the same way
(``cache.migrate``). A sandbox failure (bwrap could not start) is never
stored; a timeout is, as the program's result under those limits.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson

from distillpipe.cache import default_cache_dir, migrate
from distillpipe.records import content_hash
from distillpipe.sandbox.base import Limits, Outcome, Program

FILE_NAME = "executions.sqlite"


def _m001_executions(db: sqlite3.Connection) -> None:
    db.execute(
        """
        CREATE TABLE executions (
            key        TEXT PRIMARY KEY,
            value      BLOB NOT NULL,
            created_at REAL NOT NULL
        ) WITHOUT ROWID
        """
    )


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_m001_executions]


def execution_key(program: Program, limits: Limits, level: str) -> str:
    material: dict[str, Any] = {
        "program": program.key_material(),
        "limits": limits.model_dump(),
        "isolation": level,
    }
    return content_hash(material)


class ExecutionCache:
    """Thread-safe: pool threads read and write it through one locked connection."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else default_cache_dir() / FILE_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            self.path, timeout=30.0, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        migrate(self._db, MIGRATIONS)
        self._lock = threading.Lock()

    def get_many(self, keys: Iterable[str]) -> dict[str, Outcome]:
        keys = list(dict.fromkeys(keys))
        found: dict[str, Outcome] = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT key, value FROM executions WHERE key IN ({marks})", chunk
                )
                for key, value in rows:
                    found[key] = Outcome.from_json(orjson.loads(value), cached=True)
        return found

    def put_many(self, outcomes: dict[str, Outcome]) -> None:
        rows = [
            (key, orjson.dumps(outcome.to_json()), time.time())
            for key, outcome in outcomes.items()
            if outcome.status != "sandbox_error"
        ]
        if not rows:
            return
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR REPLACE INTO executions (key, value, created_at) VALUES (?,?,?)", rows
            )
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()
