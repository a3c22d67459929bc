"""Filter throughput and memory.

- streaming filters (length + heuristics) over 1,000,000 records through the
  real filter stage (JSONL in, JSONL out, rejected file): target >= 50,000
  records/s with flat memory (peak RSS at 1,000,000 records vs at 100,000).
- near-duplicate dedup (MinHash LSH, 128 permutations, word 5-grams, Jaccard
  0.8) of 100,000 records, 10 % of them planted near-duplicates: records/s,
  peak RSS, and how many planted duplicates were caught.

Each measurement runs in a fresh subprocess so its peak RSS is its own.

    python bench/filters.py [--stream 1000000] [--dedup 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

TARGET_STREAM = 50_000
WORDS = [
    "water",
    "river",
    "cloud",
    "rain",
    "sun",
    "light",
    "tree",
    "leaf",
    "stone",
    "sand",
    "wind",
    "fire",
    "city",
    "road",
    "train",
    "book",
    "page",
    "word",
    "song",
    "bird",
    "fish",
    "milk",
    "bread",
    "salt",
    "iron",
    "glass",
    "paper",
    "music",
    "garden",
    "winter",
    "summer",
    "autumn",
    "spring",
    "north",
    "south",
    "east",
    "west",
    "number",
    "letter",
    "colour",
    "shape",
]


def synthetic(count: int, path: Path, *, near_duplicates: float = 0.0, seed: int = 0) -> int:
    """Alpaca-like records with responses; some refusals, empties and truncations."""
    import orjson

    from distillpipe.records import record_id

    rng = random.Random(seed)
    planted = 0
    previous: list[str] = []
    with path.open("wb") as out:
        for i in range(count):
            if previous and rng.random() < near_duplicates:
                words = rng.choice(previous).split()
                words[rng.randrange(len(words))] = rng.choice(WORDS)  # one word changed
                instruction = " ".join(words)
                planted += 1
            else:
                size = rng.randint(70, 120) if near_duplicates else rng.randint(12, 40)
                instruction = f"Task {i}: " + " ".join(rng.choice(WORDS) for _ in range(size))
                if len(previous) < 5000:
                    previous.append(instruction)
                else:
                    previous[rng.randrange(5000)] = instruction
            roll = rng.random()
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 80)))
            if roll < 0.02:
                text = "As an AI language model, I cannot do that."
            elif roll < 0.03:
                text = "  "
            record = {
                "id": record_id(instruction),
                "instruction": instruction,
                "responses": [{
                    "text": text, "model": "bench", "sample": 0, "usage": {},
                    "finish_reason": "length" if roll > 0.99 else "stop",
                }],
            }  # fmt: skip
            out.write(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
    return planted


def run_child(filters: list[dict], source: Path, folder: Path) -> dict:
    """In a subprocess: the filter stage over ``source``; prints seconds and peak RSS."""
    code = f"""
import json, resource, time, yaml
from pathlib import Path
from distillpipe.config import load_config
from distillpipe.runner import run_stage
from distillpipe.stages import stage_named
folder = Path({str(folder)!r})
(folder / "c.yaml").write_text(yaml.safe_dump({{"teacher": {{"backend": "llamacpp"}},
                                                "filter": {filters!r}}}))
config = load_config(folder / "c.yaml")
started, cpu = time.perf_counter(), time.process_time()
result = run_stage(stage_named("filter"), config, {str(source)!r}, folder / "out.jsonl",
                   rejected_path=folder / "rejected.jsonl")
seconds = time.perf_counter() - started
print(json.dumps({{"seconds": seconds, "cpu": time.process_time() - cpu,
                  "in": result.records_in, "out": result.records_out,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "stats": result.stats}}))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def baseline_rss() -> float:
    code = (
        "import resource, distillpipe.runner, distillpipe.stages.filter, "
        "distillpipe.filters.length, distillpipe.filters.heuristics, distillpipe.filters.dedup;"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(done.stdout.strip())


STREAMING = [
    {"type": "length", "instruction": {"min_words": 3, "max_words": 150},
     "response": {"min_chars": 1}},
    {"type": "heuristics"},
]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stream", type=int, default=1_000_000)
    parser.add_argument("--dedup", type=int, default=100_000)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} cores, load average {load:.1f}; "
          f"interpreter + imports: {baseline_rss():.0f} MB RSS")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        small, large = folder / "small.jsonl", folder / "large.jsonl"
        synthetic(args.stream // 10, small, seed=1)
        synthetic(args.stream, large, seed=2)
        little = run_child(STREAMING, small, folder)
        big = run_child(STREAMING, large, folder)
        io_only = run_child([], large, folder)  # the same stage, no filter: JSONL in and out
        rate = big["in"] / big["seconds"]
        io_rate = io_only["in"] / io_only["seconds"]
        cpu_rate = big["in"] / big["cpu"]
        print(
            f"streaming length+heuristics, {big['in']:,} records: {rate:,.0f} records/s "
            f"({rate / TARGET_STREAM:.2f} x target {TARGET_STREAM:,}); kept {big['out']:,}; "
            f"peak RSS {big['rss_mb']:.0f} MB vs {little['rss_mb']:.0f} MB at "
            f"{little['in']:,} records"
        )
        print(f"  per CPU-second of the process (load-independent): {cpu_rate:,.0f} records/s")
        print(
            f"  peer in the same run: the stage with no filter (JSONL read + write only) "
            f"{io_rate:,.0f} records/s; filters cost "
            f"{(big['seconds'] - io_only['seconds']) / big['in'] * 1e6:.1f} µs/record"
        )
        corpus = folder / "dedup.jsonl"
        planted = synthetic(args.dedup, corpus, near_duplicates=0.1, seed=3)
        dedup = run_child([{"type": "dedup"}], corpus, folder)
        caught = dedup["stats"]["filters"]["dedup"]["rejected"]
        print(
            f"near-dup dedup, {dedup['in']:,} records: {dedup['in'] / dedup['seconds']:,.0f} "
            f"records/s ({dedup['in'] / dedup['cpu']:,.0f} per CPU-second), "
            f"peak RSS {dedup['rss_mb']:.0f} MB; rejected {caught:,} "
            f"of {planted:,} planted one-word-changed copies"
        )


if __name__ == "__main__":
    main()
