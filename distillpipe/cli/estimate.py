"""``distillpipe estimate CONFIG``: what a run would send and cost, without calling any API."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from distillpipe.cache import ResponseCache
from distillpipe.cli.common import SetOption, load
from distillpipe.cli.run import resolve_relative
from distillpipe.config import Config
from distillpipe.dispatch import call_key
from distillpipe.errors import ConfigError
from distillpipe.io import read_records
from distillpipe.stages.generate import RequestBuilder
from distillpipe.teachers.api import is_local
from distillpipe.teachers.base import teacher_identity
from distillpipe.teachers.cost import FREE, Price, find_price, prompt_tokens


def estimate(
    config: Annotated[Path, typer.Argument(help="The YAML config.")],
    input: Annotated[
        str | None, typer.Option("--input", "-i", help="Records JSONL; default: config input.")
    ] = None,
    set: SetOption = None,
) -> None:
    """Count the generate stage's requests and prompt tokens and project their cost."""
    resolved = load(config, set)
    source = input or resolved.input
    if source is None:
        raise ConfigError(f"{config}: input: give --input or set input in the config")
    path = source if source == "-" or input else str(resolve_relative(source, config))
    teacher = resolved.teacher
    mode = "chat" if teacher.mode == "batch" else teacher.mode
    build = RequestBuilder(resolved, mode)
    n, max_tokens = resolved.generate.n, resolved.generate.max_tokens
    records = requests = tokens = cached = 0
    cache = ResponseCache(resolved.cache.path) if resolved.cache.enabled else None
    identity = teacher_identity(teacher) if cache is not None else {}
    try:
        for record in read_records(path):
            request = build(record)
            records += 1
            requests += n
            tokens += n * prompt_tokens(request, teacher.model, teacher.backend)
            if cache is not None:
                keys = [call_key(identity, request, resolved.seed, s) for s in range(n)]
                cached += len(cache.get_many(keys))
    finally:
        if cache is not None:
            cache.close()
    price = _price(resolved)
    batch = teacher.mode == "batch"
    share = (requests - cached) / requests if requests else 0.0
    tokenizer = (
        "approximate: Anthropic publishes no tokenizer, counted with cl100k_base"
        if teacher.backend == "anthropic"
        else "tiktoken"
    )
    lines = [
        f"teacher         {teacher.backend}:{teacher.model}{' (batch)' if batch else ''}",
        f"records         {records:,}",
        f"requests        {requests:,} ({cached:,} already cached, free)",
        f"prompt tokens   {tokens:,} ({tokenizer})",
        f"output tokens   at most {requests * max_tokens:,} (max_tokens {max_tokens})",
    ]
    if price is None:
        lines.append(f"cost            unknown: add cost.prices.{teacher.model} to the config")
    else:
        prompt_cost = price.cost(round(tokens * share), 0, batch=batch)
        output_cost = price.cost(0, round((requests - cached) * max_tokens), batch=batch)
        lines += [
            f"prompt cost     {prompt_cost:,.4f} USD",
            f"output cost     at most {output_cost:,.4f} USD",
            f"projected cost  at most {prompt_cost + output_cost:,.4f} USD",
        ]
    typer.echo("\n".join(lines))


def _price(config: Config) -> Price | None:
    overrides = {m: Price(**row.model_dump()) for m, row in config.cost.prices.items()}
    price = find_price(config.teacher.model, overrides)
    if price is None and (
        config.teacher.backend == "llamacpp"
        or is_local(getattr(config.teacher, "base_url", "http://127.0.0.1"))
    ):
        return FREE
    return price
