import sqlite3
from pathlib import Path

import pytest

from distillpipe.cache import ResponseCache
from distillpipe.errors import CacheError
from distillpipe.teachers.base import Completion


def completion(text: str, model: str = "m") -> Completion:
    return Completion(text, model, "stop", prompt_tokens=3, completion_tokens=2)


def test_the_schema_after_migrating(tmp_path: Path):
    ResponseCache(tmp_path / "c.sqlite").close()
    db = sqlite3.connect(tmp_path / "c.sqlite")
    tables = dict(db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'"))
    assert set(tables) == {"_migrations", "completions"}
    columns = [row[1] for row in db.execute("PRAGMA table_info(completions)")]
    assert columns == ["key", "model", "value", "created_at"]
    assert [row[0] for row in db.execute("SELECT name FROM _migrations")] == ["_m001_completions"]
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_migrations_run_once(tmp_path: Path):
    for _ in range(3):
        ResponseCache(tmp_path / "c.sqlite").close()
    db = sqlite3.connect(tmp_path / "c.sqlite")
    assert db.execute("SELECT COUNT(*) FROM _migrations").fetchone()[0] == 1


def test_a_put_completion_is_answered_at_once_and_committed_by_flush(tmp_path: Path):
    writer = ResponseCache(tmp_path / "c.sqlite")
    writer.put("sha256:k1", completion("hello"))
    assert writer.get_many(["sha256:k1"]) == {"sha256:k1": completion("hello")}
    writer.flush()
    reader = ResponseCache(tmp_path / "c.sqlite")
    found = reader.get_many(["sha256:k1", "sha256:missing"])
    assert list(found) == ["sha256:k1"]
    assert found["sha256:k1"] == completion("hello")
    writer.close()


def test_every_completion_put_while_the_writer_commits_is_committed(tmp_path: Path):
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        for i in range(5000):
            cache.put(f"sha256:{i}", completion(str(i)))
            if i % 1000 == 0:  # lookups in between see committed and uncommitted alike
                assert len(cache.get_many(f"sha256:{j}" for j in range(i + 1))) == i + 1
    db = sqlite3.connect(tmp_path / "c.sqlite")
    assert db.execute("SELECT COUNT(*) FROM completions").fetchone()[0] == 5000


def test_a_failed_commit_is_raised_not_waited_for(tmp_path: Path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    db = sqlite3.connect(tmp_path / "c.sqlite")
    db.execute(
        "CREATE TRIGGER full BEFORE INSERT ON completions "
        "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
    )
    db.commit()
    cache.put("sha256:k1", completion("hello"))
    with pytest.raises(
        CacheError, match=r"c\.sqlite: writing the response cache failed: disk full"
    ):
        cache.flush()
    with pytest.raises(CacheError):
        cache.put("sha256:k2", completion("again"))
    with pytest.raises(CacheError):
        cache.close()


def test_lookups_larger_than_one_sqlite_statement(tmp_path: Path):
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        for i in range(1200):
            cache.put(f"sha256:{i}", completion(str(i)))
        found = cache.get_many(f"sha256:{i}" for i in range(0, 2400, 2))
    assert len(found) == 600
    assert found["sha256:1198"].text == "1198"


def test_stats_and_clear_by_model(tmp_path: Path):
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        cache.put("sha256:a", completion("a", model="small"))
        cache.put("sha256:b", completion("b", model="small"))
        cache.put("sha256:c", completion("c", model="large"))
        stats = cache.stats()
        assert stats.entries == 3
        assert stats.by_model == {"large": 1, "small": 2}
        assert cache.clear("small") == 2
        assert cache.stats().by_model == {"large": 1}
        assert cache.clear() == 1
        assert cache.stats().entries == 0


def test_rows_keyed_before_v2_are_counted_and_cleared_apart(tmp_path: Path):
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        cache.put("sha256:" + "0" * 64, completion("old", model="small"))  # a v1 key
        cache.put("v2:sha256:" + "1" * 64, completion("new", model="small"))
        assert cache.stats().legacy == 1
        assert cache.clear(legacy=True) == 1
        assert list(cache.get_many(["v2:sha256:" + "1" * 64])) == ["v2:sha256:" + "1" * 64]
        stats = cache.stats()
        assert (stats.entries, stats.legacy) == (1, 0)


def test_the_default_location_follows_the_environment(private_cache_dir: Path):
    with ResponseCache() as cache:
        assert cache.path == private_cache_dir / "cache.sqlite"
