"""The SQLite response cache (WAL): one row per teacher sample.

The key is the sha256 of the canonical JSON of (model, messages or prompt,
sampling parameters, config seed, sample index) — see ``dispatch.call_key``.
Each completion is committed as it arrives, so a crash loses at most the
requests in flight; when completions arrive faster than one per
``GROUP_COMMIT_SECONDS`` (fast API teachers), those arriving within that
window share one transaction, committed when it closes (a commit costs
~200 µs of blocked event loop; 2,500 of them a second would halve an API
teacher's throughput). API keys never enter it: nothing but the model's name,
the request content and the completion is stored.

Schema changes are numbered migration functions applied in order and recorded
in ``_migrations``.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import orjson
from platformdirs import user_cache_dir

from distillpipe.teachers.base import Completion

_LOOKUP_CHUNK = 500
GROUP_COMMIT_SECONDS = 0.02


def default_cache_dir() -> Path:
    return Path(os.environ.get("DISTILLPIPE_CACHE_DIR") or user_cache_dir("distillpipe"))


def default_cache_path() -> Path:
    return default_cache_dir() / "cache.sqlite"


def _m001_completions(db: sqlite3.Connection) -> None:
    db.execute(
        """
        CREATE TABLE completions (
            key        TEXT PRIMARY KEY,
            model      TEXT NOT NULL,
            value      BLOB NOT NULL,
            created_at REAL NOT NULL
        ) WITHOUT ROWID
        """
    )
    db.execute("CREATE INDEX completions_model ON completions (model)")


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_m001_completions]


def migrate(db: sqlite3.Connection) -> None:
    db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at REAL)")
    done = {row[0] for row in db.execute("SELECT name FROM _migrations")}
    for migration in MIGRATIONS:
        if migration.__name__ in done:
            continue
        with db:
            migration(db)
            db.execute(
                "INSERT INTO _migrations (name, applied_at) VALUES (?, ?)",
                (migration.__name__, time.time()),
            )


@dataclass(frozen=True, slots=True)
class CacheStats:
    path: str
    entries: int
    bytes: int
    by_model: dict[str, int]


class ResponseCache:
    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else default_cache_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=30000")
        migrate(self._db)
        self._pending: list[tuple[str, str, bytes, float]] = []
        self._last_commit = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def get_many(self, keys: Iterable[str]) -> dict[str, Completion]:
        self.flush()
        keys = list(keys)
        found: dict[str, Completion] = {}
        for start in range(0, len(keys), _LOOKUP_CHUNK):
            chunk = keys[start : start + _LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT key, value FROM completions WHERE key IN ({marks})", chunk
            )
            for key, value in rows:
                found[key] = Completion.from_cache(orjson.loads(value))
        return found

    def put(self, key: str, completion: Completion) -> None:
        """Store one completion: committed at once, or with the others of a busy 20 ms."""
        value = orjson.dumps(completion.to_cache())
        self._pending.append((key, completion.model, value, time.time()))
        now = time.monotonic()
        if now - self._last_commit >= GROUP_COMMIT_SECONDS:
            self.flush()
        elif self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
                return
            delay = self._last_commit + GROUP_COMMIT_SECONDS - now
            self._timer = loop.call_later(delay, self.flush)

    def flush(self) -> None:
        """Commit what ``put`` has gathered."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR REPLACE INTO completions (key, model, value, created_at) "
                "VALUES (?,?,?,?)",
                self._pending,
            )
            self._db.execute("COMMIT")
            self._pending.clear()
        self._last_commit = time.monotonic()

    def stats(self) -> CacheStats:
        self.flush()
        by_model = dict(
            self._db.execute("SELECT model, COUNT(*) FROM completions GROUP BY model ORDER BY 1")
        )
        size = sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.exists())
        return CacheStats(str(self.path), sum(by_model.values()), size, by_model)

    def clear(self, model: str | None = None) -> int:
        self.flush()
        if model is None:
            removed = self._db.execute("DELETE FROM completions").rowcount
        else:
            removed = self._db.execute("DELETE FROM completions WHERE model = ?", (model,)).rowcount
        self._db.execute("VACUUM")
        return removed

    def close(self) -> None:
        self.flush()
        self._db.close()

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
