"""Generation throughput: distillpipe's llamacpp backend vs raw llama-cpp-python.

Target (issue 2): distillpipe / raw >= 0.9 in completion tokens per second, on
the same prompts, model (the embedded gemma GGUF) and sampling settings. Runs
raw, distillpipe, raw again (and averages the raw runs) so that drift in the
machine's load does not favour either side.

    python bench/llamacpp_throughput.py [--prompts 16] [--max-tokens 64]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import yaml

TARGET = 0.9


def prompts_for(count: int) -> list[dict[str, str]]:
    topics = ["the sea", "a city at night", "bread", "mountains", "a library", "rain", "chess",
              "coffee", "trains", "gardens", "the moon", "winter", "music", "bicycles"]  # fmt: skip
    return [
        {"instruction": f"Write a short paragraph about {topics[i % len(topics)]} ({i})."}
        for i in range(count)
    ]


def raw_llama_cpp(config, records) -> tuple[int, float]:
    from llama_cpp import Llama

    from distillpipe.dispatch import Dispatcher
    from distillpipe.models import embedded_gguf_path
    from distillpipe.records import ensure_id
    from distillpipe.stages.base import build_teacher
    from distillpipe.stages.generate import RequestBuilder

    build = RequestBuilder(config, "completion")
    # The same sampling seeds distillpipe derives, so both sides sample alike.
    dispatcher = Dispatcher(build_teacher(config), None, config.seed)
    calls = [dispatcher.calls_for(build(ensure_id(dict(r))))[0] for r in records]
    started, tokens = time.perf_counter(), 0  # both sides are timed from model load on
    llm = Llama(
        model_path=str(embedded_gguf_path()),
        n_ctx=config.teacher.n_ctx,
        n_threads=os.cpu_count(),
        n_batch=config.teacher.n_batch,
        swa_full=False,
        verbose=False,
    )
    for call in calls:
        p = call.request.params
        out = llm.create_completion(
            call.request.prompt, max_tokens=p.max_tokens, temperature=p.temperature,
            top_p=p.top_p, stop=list(p.stop), seed=call.seed,
        )  # fmt: skip
        tokens += out["usage"]["completion_tokens"]
    elapsed = time.perf_counter() - started
    llm.close()
    return tokens, elapsed


def distillpipe_generate(config, work: Path) -> tuple[int, float]:
    from distillpipe.runner import run_stage
    from distillpipe.stages import stage_named

    os.environ["DISTILLPIPE_CACHE_DIR"] = tempfile.mkdtemp(dir=work)  # a cold cache every time
    started = time.perf_counter()
    result = run_stage(stage_named("generate"), config, work / "in.jsonl", work / "out.jsonl")
    elapsed = time.perf_counter() - started
    return result.stats["teacher"]["completion_tokens"], elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()

    from distillpipe.config import load_config
    from distillpipe.io import write_jsonl

    work = Path(tempfile.mkdtemp(prefix="dp-bench-llamacpp-"))
    (work / "config.yaml").write_text(yaml.safe_dump({
        "seed": 1,
        "teacher": {"backend": "llamacpp", "mode": "completion"},
        "generate": {"n": 1, "max_tokens": args.max_tokens, "temperature": 0.7, "top_p": 0.9},
    }))  # fmt: skip
    config = load_config(work / "config.yaml")
    records = prompts_for(args.prompts)
    write_jsonl(work / "in.jsonl", records)

    raw_a = raw_llama_cpp(config, records)
    ours = distillpipe_generate(config, work)
    raw_b = raw_llama_cpp(config, records)

    raw_rate = (raw_a[0] + raw_b[0]) / (raw_a[1] + raw_b[1])
    our_rate = ours[0] / ours[1]
    print(f"{args.prompts} prompts, max_tokens {args.max_tokens}, {os.cpu_count()} threads")
    print(f"raw llama-cpp-python : {raw_rate:6.1f} completion tokens/s (mean of two runs)")
    print(f"distillpipe generate : {our_rate:6.1f} completion tokens/s")
    ratio = our_rate / raw_rate
    verdict = "met" if ratio >= TARGET else "NOT met"
    print(f"ratio distillpipe/raw: {ratio:.2f} (target >= {TARGET}: {verdict})")


if __name__ == "__main__":
    main()
