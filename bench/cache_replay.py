"""Replay a fully cached `generate` run: records/s and peak RSS.

Targets (issue 2): >= 20,000 records/s replayed; peak RSS <= 300 MB at 100,000 records.
The cache is filled with one completion per record (keys computed by the real
dispatcher), then `distillpipe generate` runs as a subprocess over the input;
every request is answered from the cache, so this measures the orchestration:
reading, request building, hashing, SQLite look-ups, record writing.

    python bench/cache_replay.py [--records 100000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import psutil
import yaml

from distillpipe.cache import ResponseCache
from distillpipe.config import load_config
from distillpipe.dispatch import Dispatcher
from distillpipe.io import write_jsonl
from distillpipe.records import ensure_id
from distillpipe.stages.base import build_teacher
from distillpipe.stages.generate import RequestBuilder
from distillpipe.teachers.base import Completion

TARGET_RATE = 20_000
TARGET_RSS_MB = 300


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="dp-bench-replay-"))
    config_path = work / "config.yaml"
    config_path.write_text(
        yaml.safe_dump(
            {
                "name": "bench",
                "seed": 1,
                "cache": {"path": str(work / "cache.sqlite")},
                "teacher": {"backend": "llamacpp", "mode": "completion"},
                "generate": {"n": 1, "max_tokens": 64},
            }
        )
    )
    config = load_config(config_path)
    records = [
        {"instruction": f"Write item number {i} of a list of {i % 97} useful household tips."}
        for i in range(args.records)
    ]
    write_jsonl(work / "in.jsonl", records)

    fill_started = time.perf_counter()
    dispatcher = Dispatcher(build_teacher(config), None, config.seed)
    build_request = RequestBuilder(config, "completion")
    with ResponseCache(config.cache.path) as cache:
        cache._db.execute("BEGIN")
        for record in records:
            request = build_request(ensure_id(dict(record)))
            (call,) = dispatcher.calls_for(request)
            cache.put(
                call.key, Completion(f"Tip {record['instruction'][:20]}", "m", "stop", 30, 12)
            )
        cache._db.execute("COMMIT")
    print(f"filled {args.records:,} cache entries in {time.perf_counter() - fill_started:.1f}s")

    command = [
        sys.executable, "-m", "distillpipe", "generate",
        "-c", str(config_path), "-i", str(work / "in.jsonl"), "-o", str(work / "out.jsonl"), "-q",
    ]  # fmt: skip
    started = time.perf_counter()
    process = psutil.Popen(command, env={**os.environ})
    peak = 0
    while process.poll() is None:
        try:
            peak = max(peak, process.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.02)
    elapsed = time.perf_counter() - started
    if process.returncode != 0:
        sys.exit(f"generate failed with exit code {process.returncode}")
    rate = args.records / elapsed
    peak_mb = peak / 2**20
    print(f"replayed {args.records:,} records in {elapsed:.2f}s (process start included)")
    print(f"records/s: {rate:,.0f}  ratio to target {TARGET_RATE:,}: {rate / TARGET_RATE:.2f}")
    ratio = peak_mb / TARGET_RSS_MB
    print(f"peak RSS: {peak_mb:.0f} MB  ratio to limit {TARGET_RSS_MB} MB: {ratio:.2f}")


if __name__ == "__main__":
    main()
