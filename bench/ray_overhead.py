"""Ray overhead: the local executor vs Ray local mode on the same small generate workload.

Every side runs the embedded gemma GGUF on the same prompts and seeds from a
fresh cache and must write identical records. The overhead ratio compares
equal compute: the local executor with a one-thread engine against Ray with
one actor of one CPU (one thread); the local side runs before and after the
Ray runs and is averaged, so drift in a shared machine's load favours neither.
Then Ray with one actor per core gives the scaling. Printed: wall times, the
overhead ratio (with and without starting Ray), records/s per worker, the
driver's cache-commit ceiling, and a fully cached rerun on each side (what a
resumed run pays before the first new call).

    python bench/ray_overhead.py [--prompts 16] [--max-tokens 16]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import yaml

from distillpipe.cache import ResponseCache
from distillpipe.config import Config, load_config
from distillpipe.executors.local import LocalExecutor
from distillpipe.executors.ray import RayExecutor
from distillpipe.io import write_jsonl
from distillpipe.stages import stage_named
from distillpipe.teachers.base import Completion


def config_for(work: Path, name: str, executor: str, actors: int, max_tokens: int) -> Config:
    path = work / f"{name}.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "bench",
                "seed": 5,
                "cache": {"path": str(work / f"{name}-cache.sqlite")},
                "teacher": {
                    "backend": "llamacpp",
                    "mode": "completion",
                    "n_ctx": 512,
                    "n_threads": 1,
                },
                "generate": {"n": 1, "max_tokens": max_tokens, "temperature": 0.8},
                "executor": {"type": executor, "actors": actors, "batch_size": 2},
            }
        )
    )
    return load_config(path)


def timed_generate(executor, config: Config, source: Path, output: Path) -> float:
    started = time.perf_counter()
    executor.run_stage(stage_named("generate"), config, source, output)
    return time.perf_counter() - started


def commit_rate(work: Path, count: int = 2000) -> float:
    """Completions/s the driver can commit (one autocommitted SQLite put each)."""
    completion = Completion("x" * 400, "m", "stop", 40, 100)
    with ResponseCache(work / "commit-bench.sqlite") as cache:
        started = time.perf_counter()
        for i in range(count):
            cache.put(f"sha256:{i:064x}", completion)
        return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--actors", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="dp-bench-ray-"))
    source = work / "in.jsonl"
    topics = ["bread", "rain", "chess", "trains", "the moon", "gardens", "coffee", "music"]
    write_jsonl(
        source,
        [
            {"instruction": f"Write one sentence about {topics[i % len(topics)]} ({i})."}
            for i in range(args.prompts)
        ],
    )
    local = config_for(work, "local", "local", 1, args.max_tokens)
    one = config_for(work, "ray1", "ray", 1, args.max_tokens)
    many = config_for(work, "ray", "ray", args.actors, args.max_tokens)
    print(f"{args.prompts} prompts x {args.max_tokens} tokens, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f} before")  # fmt: skip

    before = timed_generate(LocalExecutor(), local, source, work / "local.jsonl")

    import ray

    started = time.perf_counter()
    ray.init(num_cpus=args.actors, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    init_seconds = time.perf_counter() - started
    one_seconds = timed_generate(RayExecutor(one.executor), one, source, work / "ray1.jsonl")
    many_seconds = timed_generate(RayExecutor(many.executor), many, source, work / "ray.jsonl")
    again = config_for(work, "local-after", "local", 1, args.max_tokens)
    after = timed_generate(LocalExecutor(), again, source, work / "local-after.jsonl")
    local_seconds = (before + after) / 2
    names = ("local", "local-after", "ray1", "ray")
    same = len({(work / f"{name}.jsonl").read_bytes() for name in names}) == 1

    cached_local = timed_generate(LocalExecutor(), local, source, work / "local2.jsonl")
    cached_ray = timed_generate(RayExecutor(many.executor), many, source, work / "ray2.jsonl")
    ray.shutdown()
    commits = commit_rate(work)

    per_worker = args.prompts / many_seconds / args.actors
    rate = args.prompts / local_seconds
    print(f"identical records: {same}; load average {os.getloadavg()[0]:.1f} after")
    print(f"local executor, 1 thread: {local_seconds:.2f}s ({rate:.3f} rec/s; "
          f"{before:.2f}s before, {after:.2f}s after the Ray runs)")  # fmt: skip
    print(f"ray, 1 actor x 1 CPU:     {one_seconds:.2f}s (+ {init_seconds:.1f}s ray.init)")
    print(f"overhead ratio ray/local: {one_seconds / local_seconds:.2f} "
          f"({(one_seconds + init_seconds) / local_seconds:.2f} with ray.init)")  # fmt: skip
    print(f"ray, {args.actors} actors x 1 CPU:    {many_seconds:.2f}s: "
          f"speed-up {one_seconds / many_seconds:.2f} over 1 actor")  # fmt: skip
    print(f"records/s per Ray worker: {per_worker:.3f}")
    print(f"fully cached rerun: local {cached_local:.2f}s, ray {cached_ray:.2f}s "
          f"(ratio {cached_ray / cached_local:.2f}; no actor is started)")  # fmt: skip
    print(f"driver commit ceiling: {commits:,.0f} completions/s "
          f"= {commits / per_worker:,.0f} workers at this per-worker rate")  # fmt: skip
    if not same:
        raise SystemExit("the Ray executor wrote different records")


if __name__ == "__main__":
    main()
