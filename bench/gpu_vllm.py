"""GPU throughput: distillpipe's vllm backend vs raw ``vllm.LLM``, and the managed server.

Target (issue 7): distillpipe's vllm backend / raw ``vllm.LLM.chat`` >= 0.95 in
completion tokens per second on the same prompts, model and sampling (the
same per-sample seeds). Raw gets every prompt in one call, the best case for
continuous batching; distillpipe goes through the generate stage, the
dispatcher, the SQLite response cache (cold) and chunks of ``--batch-size``
records. Both share one engine, so model loading is outside both timings; the
passes alternate raw, distillpipe, raw, distillpipe and the rates are summed.

A second phase, in its own process so the GPU is free again, measures the
managed-server path: distillpipe starts ``vllm serve`` through ``teacher.launch``
and generates through the openai backend (startup timed apart).

Needs a GPU machine with ``pip install 'distillpipe[vllm]'``. Without network
access to a model hub, ``--model tiny`` (the default) builds a small Llama with
random weights and a tokenizer trained on the spot: the ratios measure
distillpipe's overhead, which a bigger model only makes smaller.

    python bench/gpu_vllm.py [--model tiny|HF_ID|PATH] [--prompts 2048] [--max-tokens 256]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TARGET = 0.95
TOPICS = ["the sea", "a city at night", "bread", "mountains", "a library", "rain", "chess",
          "coffee", "trains", "gardens", "the moon", "winter", "music", "bicycles"]  # fmt: skip


def records_for(count: int) -> list[dict[str, Any]]:
    return [
        {"id": f"r{i}", "instruction": f"Write a paragraph about {TOPICS[i % len(TOPICS)]} ({i})."}
        for i in range(count)
    ]


def build_tiny_model(folder: Path) -> str:
    """A 4-layer Llama with random weights and a BPE tokenizer trained here: no hub needed."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    corpus = [r["instruction"] for r in records_for(512)] * 4
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel()
    special = ["<unk>", "<s>", "</s>", "<pad>"]
    trainer = trainers.BpeTrainer(vocab_size=2048, special_tokens=special)
    tokenizer.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
        pad_token="<pad>",
    )  # fmt: skip
    fast.chat_template = (
        "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>{% endfor %}"
        "{% if add_generation_prompt %}<s>assistant: {% endif %}"
    )
    fast.save_pretrained(folder)
    config = LlamaConfig(
        vocab_size=len(fast), hidden_size=512, intermediate_size=1408, num_hidden_layers=4,
        num_attention_heads=8, num_key_value_heads=8, max_position_embeddings=2048,
        bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id, torch_dtype="bfloat16",
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    return str(folder)


def bench_config(work: Path, teacher: dict[str, Any], args: argparse.Namespace):
    import yaml

    from distillpipe.config import load_config

    path = work / f"{teacher['backend']}.yaml"
    path.write_text(yaml.safe_dump({
        "seed": 1,
        "run_dir": str(work / "runs"),
        "teacher": teacher,
        "generate": {"n": 1, "max_tokens": args.max_tokens, "temperature": 0.8, "top_p": 0.95,
                     "batch_size": args.batch_size},
    }))  # fmt: skip
    return load_config(path)


async def distillpipe_pass(teacher, config, records, cache_path: Path) -> tuple[int, float]:
    """The generate stage as ``run_stage`` drives it, on an engine already loaded."""
    from distillpipe.cache import ResponseCache
    from distillpipe.dispatch import Dispatcher
    from distillpipe.stages.base import StageContext
    from distillpipe.stages.generate import GenerateStage

    cache = ResponseCache(cache_path)
    ctx = StageContext(config)
    ctx._dispatcher = Dispatcher(teacher, cache, config.seed)
    started = time.perf_counter()
    count = 0
    async for _ in GenerateStage().run(iter([dict(r) for r in records]), ctx):
        count += 1
    elapsed = time.perf_counter() - started
    cache.close()
    assert count == len(records)
    return ctx._dispatcher.stats.completion_tokens, elapsed


def raw_pass(llm, calls) -> tuple[int, float]:
    from vllm import SamplingParams

    from distillpipe.teachers.vllm import sampling_kwargs

    conversations = [list(call.request.messages) for call in calls]
    params = [SamplingParams(**sampling_kwargs(call)) for call in calls]
    started = time.perf_counter()
    outputs = llm.chat(conversations, params, use_tqdm=False)
    elapsed = time.perf_counter() - started
    return sum(len(o.outputs[0].token_ids) for o in outputs), elapsed


def engine_phase(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from distillpipe.dispatch import Dispatcher
    from distillpipe.stages.base import build_teacher
    from distillpipe.stages.generate import RequestBuilder

    config = bench_config(work, {
        "backend": "vllm", "model": args.model, "mode": "chat",
        "gpu_memory_utilization": args.gpu_memory_utilization, "max_model_len": 2048,
    }, args)  # fmt: skip
    teacher = build_teacher(config)
    started = time.perf_counter()
    llm = teacher.load()
    load_seconds = time.perf_counter() - started
    records = records_for(args.prompts)
    build = RequestBuilder(config, "chat")
    dispatcher = Dispatcher(teacher, None, config.seed)  # the seeds distillpipe will use
    calls = [dispatcher.calls_for(build(r))[0] for r in records]
    raw_pass(llm, calls[:64])  # warm-up: CUDA graphs, allocator
    raw, ours = [0, 0.0], [0, 0.0]
    for round_ in range(2):
        for total, result in (
            (raw, raw_pass(llm, calls)),
            (ours, asyncio.run(distillpipe_pass(teacher, config, records, work / f"c{round_}"))),
        ):
            total[0] += result[0]
            total[1] += result[1]
    return {"load_s": load_seconds, "raw": raw, "distillpipe": ours}


def server_phase(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from distillpipe.stages.base import build_teacher

    command = ["vllm", "serve", "{model}", "--host", "{host}", "--port", "{port}",
               "--gpu-memory-utilization", str(args.gpu_memory_utilization),
               "--max-model-len", "2048"]  # fmt: skip
    config = bench_config(work, {
        "backend": "openai", "model": args.model, "mode": "chat", "concurrency": 512,
        "timeout": 600, "launch": {"command": command, "startup_timeout": 900},
    }, args)  # fmt: skip
    teacher = build_teacher(config)
    records = records_for(args.prompts)

    async def run() -> tuple[float, list[tuple[int, float]]]:
        started = time.perf_counter()
        await teacher.managed_server().start()
        startup = time.perf_counter() - started
        try:
            await distillpipe_pass(teacher, config, records[:64], work / "warm")
            passes = [
                await distillpipe_pass(teacher, config, records, work / f"s{i}") for i in range(2)
            ]
        finally:
            await teacher.aclose()
        return startup, passes

    startup, passes = asyncio.run(run())
    tokens, seconds = (sum(p[i] for p in passes) for i in (0, 1))
    return {"startup_s": startup, "server": [tokens, seconds]}


def rate(pair: list[float]) -> float:
    return pair[0] / pair[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tiny", help="tiny (built here), a HF id or a folder")
    parser.add_argument("--prompts", type=int, default=2048)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=1024, help="generate.batch_size")
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.8)
    parser.add_argument("--phase", choices=["engine", "server"], help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.phase:  # a child process: one phase, one JSON line
        work = Path(args.work)
        result = engine_phase(args, work) if args.phase == "engine" else server_phase(args, work)
        print("RESULT " + json.dumps(result), flush=True)
        return

    work = Path(tempfile.mkdtemp(prefix="dp-bench-vllm-"))
    if args.model == "tiny":
        args.model = build_tiny_model(work / "tiny-llama")
    results: dict[str, Any] = {}
    for phase in ("engine", "server"):
        child = subprocess.run(
            [sys.executable, __file__, "--phase", phase, "--work", str(work),
             "--model", args.model, "--prompts", str(args.prompts),
             "--max-tokens", str(args.max_tokens), "--batch-size", str(args.batch_size),
             "--gpu-memory-utilization", str(args.gpu_memory_utilization)],
            capture_output=True, text=True,
        )  # fmt: skip
        lines = [line for line in child.stdout.splitlines() if line.startswith("RESULT ")]
        if child.returncode != 0 or not lines:
            sys.exit(f"{phase} phase failed:\n{child.stderr[-4000:]}")
        results.update(json.loads(lines[-1][len("RESULT ") :]))

    raw, ours, server = (rate(results[k]) for k in ("raw", "distillpipe", "server"))
    print(f"model {args.model}; {args.prompts} prompts x max {args.max_tokens} tokens, "
          f"batch_size {args.batch_size}; engine load {results['load_s']:.0f}s, "
          f"server startup {results['startup_s']:.0f}s (both outside the rates)")  # fmt: skip
    print(f"{'path':<34}{'completion tok/s':>18}{'ratio':>8}")
    print(f"{'raw vllm.LLM.chat (all at once)':<34}{raw:>18,.0f}{1.0:>8.2f}")
    print(f"{'distillpipe vllm backend':<34}{ours:>18,.0f}{ours / raw:>8.2f}")
    print(f"{'distillpipe managed vllm serve':<34}{server:>18,.0f}{server / raw:>8.2f}")
    verdict = "met" if ours / raw >= TARGET else "NOT met"
    print(f"distillpipe vllm / raw: {ours / raw:.3f} (target >= {TARGET}: {verdict}); "
          f"managed server / engine: {server / ours:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
