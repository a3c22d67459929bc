"""Run every benchmark, one subprocess each, then print each one's ratio lines together.

Sizes default to a quick pass that fits a two-core machine in well under an
hour; ``--full`` uses each benchmark's own defaults (the issue sizes the
README figures come from). A benchmark that needs what this machine lacks (a
GPU and vLLM) is listed as skipped with the reason, never silently.

    python bench/run_all.py [--full] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent

# name -> arguments for the quick pass (--full passes none: the script's own defaults)
QUICK: dict[str, list[str]] = {
    "llamacpp_throughput": ["--prompts", "8", "--max-tokens", "32"],
    "llamacpp_build": ["--prompts", "8", "--max-tokens", "32"],
    "perplexity": ["--records", "6", "--rounds", "1", "--no-naive"],
    "cache_replay": ["--records", "20000"],
    "filters": ["--stream", "200000", "--dedup", "20000"],
    "novelty": ["--pool", "10000", "--candidates", "100", "--sample", "2"],
    "export_throughput": ["--records", "20000"],
    "api_overhead": ["--requests", "4000", "--in-flight", "128"],
    "sandbox": ["--tests", "60", "--rounds", "2"],
    "ray_overhead": ["--prompts", "8", "--max-tokens", "8"],
    "gpu_vllm": [],
}

# the lines that carry a benchmark's verdict: a ratio against its target or its peer
HEADLINE = re.compile(r"ratio|of ideal|x target|target|/ raw|ceiling", re.IGNORECASE)


def skip_reason(name: str) -> str | None:
    if name == "gpu_vllm" and (
        importlib.util.find_spec("vllm") is None or shutil.which("nvidia-smi") is None
    ):
        return "needs a GPU and pip install 'distillpipe[vllm]'"
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="each benchmark's own sizes")
    parser.add_argument("--only", nargs="*", choices=sorted(QUICK), help="run just these")
    args = parser.parse_args()
    names = args.only or list(QUICK)
    headlines: dict[str, list[str]] = {}
    failed = []
    for name in names:
        reason = skip_reason(name)
        if reason is not None:
            headlines[name] = [f"skipped: {reason}"]
            continue
        command = [sys.executable, str(BENCH / f"{name}.py"), *([] if args.full else QUICK[name])]
        print(f"\n=== {name}: {' '.join(command[1:])}", flush=True)
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, bufsize=1)
        lines = []
        assert process.stdout is not None
        for line in process.stdout:
            print(line, end="", flush=True)
            lines.append(line.rstrip())
        seconds = time.perf_counter() - started
        if process.wait() != 0:
            failed.append(name)
            headlines[name] = [f"FAILED: exit status {process.returncode} after {seconds:.0f} s"]
            continue
        headlines[name] = [line.strip() for line in lines if HEADLINE.search(line)] or [
            "(printed no ratio line)"
        ]
    print("\n=== ratios")
    for name, found in headlines.items():
        print(f"{name}:")
        for line in found:
            print(f"  {line}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
