"""The SQLite response cache (WAL): one row per teacher sample.

The key is ``v2:`` and the sha256 of the canonical JSON of (the teacher's
identity, messages or prompt, sampling parameters, config seed, sample index)
— see ``dispatch.call_key``. Rows from before ``v2`` (keys ``sha256:…``, which
held only the model's name) stay readable but no key matches them again: the
name alone cannot say which model wrote them. ``stats`` counts them and
``clear(legacy=True)`` removes them.
``put`` hands a completion to a writer thread and returns: the thread commits
whatever has gathered since its previous commit in one transaction — one
completion at a time from a slow teacher; from a fast API, what arrived in the
~10 ms since the last commit — so a crash loses at most those, and the event
loop never waits on SQLite (a commit costs ~1 ms; on the loop, 50 of them a
second took ~9 % of an API teacher's throughput). Until its commit, a
completion is answered from memory. API keys never enter the cache: nothing
but the model's name and identity, the request content and the completion is
stored (the identity only as part of the hashed key).

Schema changes are numbered migration functions applied in order and recorded
in ``_migrations``.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import orjson
from platformdirs import user_cache_dir

from distillpipe.errors import CacheError
from distillpipe.teachers.base import Completion

KEY_VERSION = "v2"
_LOOKUP_CHUNK = 500
GATHER_SECONDS = 0.01


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


def migrate(
    db: sqlite3.Connection, migrations: list[Callable[[sqlite3.Connection], None]] | None = None
) -> None:
    """Apply ``migrations`` (default: the response cache's) not yet in ``_migrations``."""
    db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at REAL)")
    done = {row[0] for row in db.execute("SELECT name FROM _migrations")}
    for migration in MIGRATIONS if migrations is None else migrations:
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
    legacy: int = 0
    """Rows keyed before ``KEY_VERSION``: never matched again."""


_LEGACY = f"key NOT LIKE '{KEY_VERSION}:%'"
_INSERT = "INSERT OR REPLACE INTO completions (key, model, value, created_at) VALUES (?,?,?,?)"
_STOP = None

# (key, model, value, created_at, the completion) — the last is for the unwritten map
_Row = tuple[str, str, bytes, float, Completion]


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA busy_timeout=30000")
    return db


class ResponseCache:
    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else default_cache_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = _connect(self.path)
        migrate(self._db)
        self._unwritten: dict[str, Completion] = {}
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[_Row | threading.Event | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._failure: BaseException | None = None

    def get_many(self, keys: Iterable[str]) -> dict[str, Completion]:
        found: dict[str, Completion] = {}
        unread = []
        with self._lock:  # before the database: a commit lands before its row leaves here
            for key in keys:
                if key in self._unwritten:
                    found[key] = self._unwritten[key]
                else:
                    unread.append(key)
        for start in range(0, len(unread), _LOOKUP_CHUNK):
            chunk = unread[start : start + _LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT key, value FROM completions WHERE key IN ({marks})", chunk
            )
            for key, value in rows:
                found[key] = Completion.from_cache(orjson.loads(value))
        return found

    def put(self, key: str, completion: Completion) -> None:
        """Store one completion: the writer thread commits it with whatever else has come."""
        self._raise_failure()
        value = orjson.dumps(completion.to_cache())
        with self._lock:
            self._unwritten[key] = completion
        if self._writer is None:
            self._writer = threading.Thread(
                target=self._write, name="distillpipe-cache-writer", daemon=True
            )
            self._writer.start()
        self._queue.put((key, completion.model, value, time.time(), completion))

    def flush(self) -> None:
        """Wait until everything ``put`` so far is committed."""
        if self._writer is not None:
            done = threading.Event()
            self._queue.put(done)
            # a writer that failed after its last drain would never set it
            while self._writer.is_alive() and not done.wait(0.1):
                pass
        self._raise_failure()

    def _write(self) -> None:
        db = _connect(self.path)
        waiters: list[threading.Event] = []
        committed = 0.0
        try:
            while True:
                rows: list[_Row] = []
                stop = False
                item = self._queue.get()
                since = time.monotonic() - committed
                if since < GATHER_SECONDS:  # busy: let a bigger group gather, commit less often
                    time.sleep(GATHER_SECONDS - since)
                while True:  # take everything queued since the last commit
                    if item is _STOP:
                        stop = True
                    elif isinstance(item, threading.Event):
                        waiters.append(item)
                    else:
                        rows.append(item)
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                if rows:
                    db.execute("BEGIN")
                    db.executemany(_INSERT, [row[:4] for row in rows])
                    db.execute("COMMIT")
                    committed = time.monotonic()
                    with self._lock:
                        for key, *_, completion in rows:
                            if self._unwritten.get(key) is completion:
                                del self._unwritten[key]
                for waiter in waiters:
                    waiter.set()
                waiters.clear()
                if stop:
                    return
        except BaseException as exc:  # disk full, database locked: put/flush/close raise it
            self._failure = exc
            with contextlib.suppress(queue.Empty):
                while True:
                    item = self._queue.get_nowait()
                    if isinstance(item, threading.Event):
                        waiters.append(item)
            for waiter in waiters:
                waiter.set()
        finally:
            db.close()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise CacheError(f"{self.path}: writing the response cache failed: {self._failure}")

    def stats(self) -> CacheStats:
        self.flush()
        by_model = dict(
            self._db.execute("SELECT model, COUNT(*) FROM completions GROUP BY model ORDER BY 1")
        )
        size = sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.exists())
        (legacy,) = self._db.execute(f"SELECT COUNT(*) FROM completions WHERE {_LEGACY}").fetchone()
        return CacheStats(str(self.path), sum(by_model.values()), size, by_model, legacy)

    def clear(self, model: str | None = None, *, legacy: bool = False) -> int:
        """Delete every row, or one model's, or (``legacy``) those keyed before v2."""
        self.flush()
        where, args = [], []
        if model is not None:
            where.append("model = ?")
            args.append(model)
        if legacy:
            where.append(_LEGACY)
        condition = f" WHERE {' AND '.join(where)}" if where else ""
        removed = self._db.execute(f"DELETE FROM completions{condition}", args).rowcount
        self._db.execute("VACUUM")
        return removed

    def close(self) -> None:
        if self._writer is not None:
            self._queue.put(_STOP)
            self._writer.join()
            self._writer = None
        self._db.close()
        self._raise_failure()

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
