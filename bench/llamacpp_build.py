"""Generation speed of the portable llama.cpp build against a native one on this machine.

The project installs llama-cpp-python with portable flags (distillpipe/llama_build.py:
AVX2 on x86-64, no AVX-512, no AMX) so that it runs on every machine of its kind.
This benchmark builds the same version with ``-DGGML_NATIVE=ON`` once (cached
in its own wheel folder; about 7 minutes on two cores), unpacks it beside the
installed one, and generates the same prompts with both in alternating child
processes (portable, native, portable, native) so drift in the machine's load
favours neither. Printed: completion tokens/s of each and portable / native.

    python bench/llamacpp_build.py [--prompts 16] [--max-tokens 64] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from distillpipe.llama_build import build_wheel, wheel_dir
from distillpipe.models import embedded_gguf_path

NATIVE_FLAGS = "-DGGML_NATIVE=ON"

# argv: gguf, prompts, max_tokens, threads; prints {"tokens": ..., "seconds": ...}
GENERATE = """
import json, sys, time
import llama_cpp
from llama_cpp import Llama
gguf = sys.argv[1]
prompts, max_tokens, threads = (int(arg) for arg in sys.argv[2:5])
llm = Llama(model_path=gguf, n_ctx=512, n_threads=threads, verbose=False)
llm("warm up", max_tokens=4)
tokens, started = 0, time.perf_counter()
for i in range(prompts):
    out = llm(f"Question {i}: name a use for a paper clip.\\nAnswer:", max_tokens=max_tokens,
              temperature=0.7, seed=i)
    tokens += out["usage"]["completion_tokens"]
print(json.dumps({"tokens": tokens, "seconds": time.perf_counter() - started,
                  "library": llama_cpp.__file__}))
"""


def native_site() -> Path:
    """The native build unpacked into a folder of its own (a PYTHONPATH entry)."""
    site = wheel_dir(NATIVE_FLAGS) / "site"
    if not (site / "llama_cpp").is_dir():
        wheel = build_wheel(NATIVE_FLAGS)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--no-deps",
                "--target",
                str(site),
                str(wheel),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return site


def run(gguf: Path, args: argparse.Namespace, site: Path | None) -> dict:
    env = dict(os.environ)
    if site is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    command = [sys.executable, "-c", GENERATE, str(gguf), str(args.prompts),
               str(args.max_tokens), str(args.threads)]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    gguf = embedded_gguf_path()
    site = native_site()
    totals = {"portable": [0, 0.0], "native": [0, 0.0]}
    for _ in range(2):
        for name, where in (("portable", None), ("native", site)):
            result = run(gguf, args, where)
            if name == "native" and not result["library"].startswith(str(site)):
                raise SystemExit(f"the native run imported {result['library']}, not {site}")
            totals[name][0] += result["tokens"]
            totals[name][1] += result["seconds"]
    rate = {name: tokens / seconds for name, (tokens, seconds) in totals.items()}
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        "unknown CPU",
    )  # fmt: skip
    print(f"{args.prompts} prompts x max {args.max_tokens} tokens, {args.threads} threads, {cpu}")
    print(f"portable build (AVX2, no AVX-512/AMX): {rate['portable']:7.1f} completion tokens/s")
    print(f"native build (-march=native)         : {rate['native']:7.1f} completion tokens/s")
    print(f"ratio portable / native: {rate['portable'] / rate['native']:.2f}")


if __name__ == "__main__":
    main()
