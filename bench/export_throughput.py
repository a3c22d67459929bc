"""Export throughput: `distillpipe export` against a bare JSONL copy of the same rows.

No target is set for export; the figure is the ratio of distillpipe's export
(read, select, seeded shuffle, split, format, atomic write, dataset card) to
the least any exporter must do: read each record with orjson and write one
messages row with orjson, in input order. Both run in this process on the
same file, so machine load affects both alike.

    python bench/export_throughput.py [--records 100000]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import orjson
import yaml

from distillpipe.config import load_config
from distillpipe.io import read_records, write_jsonl
from distillpipe.stages.export import build_export, write_export


def records(count: int):
    for i in range(count):
        yield {
            "id": f"{i:016x}",
            "instruction": f"Write item number {i} of a list of {i % 97} useful household tips.",
            "origin": {"stage": "seed"},
            "responses": [
                {
                    "text": f"Tip {i}: keep a spare key with a neighbour. " * 4,
                    "model": "teacher",
                    "finish_reason": "stop",
                    "usage": {"prompt_tokens": 30, "completion_tokens": 40},
                    "sample": s,
                }
                for s in range(2)
            ],
            "scores": {"reward": (i % 100) / 100},
            "selection": {"chosen": i % 2, "rejected": 1 - i % 2, "by": "reward"},
        }


def bare_copy(source: Path, target: Path) -> int:
    count = 0
    with source.open("rb") as src, target.open("wb") as out:
        for line in src:
            record = orjson.loads(line)
            text = record["responses"][0]["text"]
            row = {"messages": [{"role": "user", "content": record["instruction"]},
                                {"role": "assistant", "content": text}]}  # fmt: skip
            out.write(orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE))
            count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dp-bench-export-"))
    source = work / "in.jsonl"
    write_jsonl(source, records(args.records))
    config_path = work / "config.yaml"
    config_path.write_text(yaml.safe_dump({"name": "bench", "seed": 1, "export": {
        "format": "messages", "validation": 0.05}}))  # fmt: skip
    config = load_config(config_path)

    started = time.perf_counter()
    copied = bare_copy(source, work / "bare.jsonl")
    bare_seconds = time.perf_counter() - started

    started = time.perf_counter()
    exported = build_export(read_records(source), config)  # streamed, as the CLI does
    write_export(exported, config, work / "export", None)
    export_seconds = time.perf_counter() - started
    rows = sum(len(split) for split in exported.splits.values())
    assert rows == copied == args.records

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"records: {args.records:,}")
    print(f"bare orjson copy:   {copied / bare_seconds:>9,.0f} records/s ({bare_seconds:.2f}s)")
    print(f"distillpipe export: {rows / export_seconds:>9,.0f} records/s ({export_seconds:.2f}s)")
    print(f"ratio export / bare copy: {bare_seconds / export_seconds:.2f}")
    print(f"peak RSS of this process: {peak_mb:,.0f} MB (export holds the rows it writes)")


if __name__ == "__main__":
    main()
