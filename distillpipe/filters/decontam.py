"""Decontamination: word n-gram overlap (13-grams by default, as GPT-3 did;
lower-cased, punctuation stripped) between a record's instruction, input and
responses and the benchmark files the user names — JSONL files or Hugging Face
datasets (a folder from ``save_to_disk``, or a dataset name already in the
local cache), with the text fields to use. The reason names the benchmark and
the item. A benchmark item shorter than n words counts as one gram of its own.

The index is built lazily once per process, so scoring stays pure per batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from distillpipe.errors import ConfigError, InputError
from distillpipe.filters.base import Filter, FilterOptions, Record, Verdict
from distillpipe.filters.text import ngrams, words


class Benchmark(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, description="as named in reasons; default: file or dataset")
    path: str | None = Field(None, description="a JSONL file or a save_to_disk folder")
    dataset: str | None = Field(None, description="a Hugging Face dataset in the local cache")
    subset: str | None = None
    split: str = "test"
    fields: list[str] = Field(min_length=1, description="the text fields to index")
    id_field: str | None = Field(None, description="default: the row number")

    @model_validator(mode="after")
    def _one_source(self) -> Benchmark:
        if (self.path is None) == (self.dataset is None):
            raise ValueError("a benchmark needs either `path` or `dataset`")
        return self

    @property
    def label(self) -> str:
        return self.name or Path(self.path or self.dataset or "").name


class DecontamOptions(FilterOptions):
    type: str = "decontam"
    benchmarks: list[Benchmark] = Field(min_length=1)
    n: int = Field(13, ge=1, description="word n-gram size")
    on: list[Literal["instruction", "input", "responses"]] = Field(
        default_factory=lambda: ["instruction", "input", "responses"]
    )


class DecontamFilter(Filter):
    type: ClassVar[str] = "decontam"
    Options = DecontamOptions
    options: DecontamOptions

    def __init__(self, options: FilterOptions, config: Any = None) -> None:
        super().__init__(options, config)
        self._index: dict[str, tuple[str, str]] | None = None
        self._short_lengths: set[int] = set()

    def load(self) -> dict[str, tuple[str, str]]:
        """n-gram → (benchmark, item id): the first item a gram was seen in."""
        if self._index is None:
            index: dict[str, tuple[str, str]] = {}
            for benchmark in self.options.benchmarks:
                for item_id, text in benchmark_texts(benchmark):
                    tokens = words(text)
                    if 0 < len(tokens) < self.options.n:
                        self._short_lengths.add(len(tokens))
                    for gram in ngrams(tokens, self.options.n):
                        index.setdefault(gram, (benchmark.label, item_id))
            self._index = index
        return self._index

    def score(self, records: Sequence[Record]) -> list[Any]:
        index = self.load()
        return [self._first_overlap(record, index) for record in records]

    def _texts(self, record: Record) -> Iterator[tuple[str, str]]:
        if "instruction" in self.options.on:
            yield "instruction", record.get("instruction") or ""
        if "input" in self.options.on and record.get("input"):
            yield "input", record["input"]
        if "responses" in self.options.on:
            for i, response in enumerate(record.get("responses") or []):
                yield f"response {i}", response.get("text") or ""

    def _first_overlap(self, record: Record, index: dict[str, tuple[str, str]]) -> Any:
        sizes = [self.options.n, *sorted(self._short_lengths, reverse=True)]
        for where, text in self._texts(record):
            tokens = words(text)
            for size in sizes:
                if len(tokens) < size:
                    continue
                for gram in ngrams(tokens, size):
                    if gram in index:
                        benchmark, item = index[gram]
                        return {"benchmark": benchmark, "item": item, "field": where, "ngram": gram}
        return None

    def value(self, score: Any) -> float:
        return 0.0 if score is None else 1.0

    def decide(self, record: Record, score: Any) -> Verdict:
        if score is None:
            return Verdict.kept(0)
        return Verdict.rejected(
            f"{score['field']} overlaps benchmark {score['benchmark']} item {score['item']}: "
            f"{score['ngram']!r}",
            score,
        )


def benchmark_texts(benchmark: Benchmark) -> Iterator[tuple[str, str]]:
    """(item id, text) for every indexed field of every row."""
    for number, row in enumerate(_rows(benchmark)):
        item_id = str(row.get(benchmark.id_field, number)) if benchmark.id_field else str(number)
        for field in benchmark.fields:
            if field not in row:
                raise InputError(
                    f"benchmark {benchmark.label}: row {number} has no field {field!r} "
                    f"(it has {', '.join(sorted(row))})"
                )
            value = row[field]
            if isinstance(value, list):
                value = " ".join(str(v) for v in value)
            if value is not None:
                yield item_id, str(value)


def _rows(benchmark: Benchmark) -> Iterator[dict[str, Any]]:
    if benchmark.path is not None:
        path = Path(benchmark.path).expanduser()
        if path.is_dir():
            import datasets

            loaded = datasets.load_from_disk(str(path))
            if isinstance(loaded, datasets.DatasetDict):
                loaded = loaded[benchmark.split]
            yield from loaded
            return
        if not path.exists():
            raise ConfigError(f"filter decontam: benchmarks: no such file: {path}")
        from distillpipe.io import read_jsonl

        yield from read_jsonl(path)
        return
    import datasets

    try:
        yield from datasets.load_dataset(benchmark.dataset, benchmark.subset, split=benchmark.split)
    except Exception as exc:  # not in the local cache, no network, bad split ...
        raise ConfigError(
            f"filter decontam: benchmark dataset {benchmark.dataset!r} could not be loaded: {exc}"
        ) from None
