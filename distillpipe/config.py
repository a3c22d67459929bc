"""The YAML config: pydantic models, ``${ENV}`` interpolation, ``--set`` overrides.

Every validation error becomes one ConfigError line naming the key, the file
and the line the key stands on. The ``teacher:`` block is validated by the
chosen backend's own ``Options`` model, found through the teacher registry.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import replace
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SerializeAsAny,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from distillpipe import registry
from distillpipe.errors import ConfigError
from distillpipe.filters.base import FilterOptions, filter_class
from distillpipe.records import content_hash
from distillpipe.redaction import is_secret_name, redact, secret_values
from distillpipe.seeds import SeedSourceConfig
from distillpipe.structured import JsonStyle, ResponseFormat, load_schema_file, schema_error
from distillpipe.teachers.base import SamplingParams, TeacherOptions, teacher_class
from distillpipe.teachers.members import PanelMember, single_member, split_member

_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
Loc = tuple[str | int, ...]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StageOptions(StrictModel):
    """A plug-in stage's section: the stage's ``Options`` subclasses this (see registry.py)."""

    enabled: bool = Field(True, description="false: the section is kept, the stage not run")

    def beside_config(self, config_path: Path) -> None:
        """Read the section's relative paths from the config's folder (see
        :func:`beside_config`); a section that names files overrides this."""


class SamplingConfig(StrictModel):
    """Sampling parameters a stage sends with its teacher requests."""

    temperature: float = Field(0.7, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(256, ge=1)
    stop: list[str] = Field(default_factory=list)
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    top_logprobs: int | None = Field(None, ge=0, le=20)

    def sampling_params(self, extra_stop: tuple[str, ...] = ()) -> SamplingParams:
        return SamplingParams(
            temperature=self.temperature,
            top_p=self.top_p,
            max_tokens=self.max_tokens,
            stop=tuple(self.stop) + tuple(s for s in extra_stop if s not in self.stop),
            presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty,
            top_logprobs=self.top_logprobs,
        )


class CacheConfig(StrictModel):
    path: str | None = Field(
        None, description="SQLite file; default: the user cache dir (or $DISTILLPIPE_CACHE_DIR)"
    )
    enabled: bool = True


class UntilConfig(StrictModel):
    """Rejection sampling: draw ``step`` samples a round until ``k`` pass ``filter``."""

    filter: str = Field(description="the name of a filter in the config's `filter:` list")
    k: int = Field(1, ge=1, description="passing samples that end a record's sampling")
    max_samples: int = Field(16, ge=1, le=1024, description="samples drawn at most per record")
    step: int = Field(4, ge=1, description="samples drawn per round")

    @model_validator(mode="after")
    def _k_within_max(self) -> UntilConfig:
        if self.k > self.max_samples:
            raise ValueError(f"k ({self.k}) exceeds max_samples ({self.max_samples})")
        return self


class ConversationConfig(StrictModel):
    """generate's conversation mode: from the record's first user turn, a simulated user
    and the teacher take turns (``stages/conversation.py``)."""

    turns: int = Field(3, ge=1, le=64, description="assistant turns per conversation")
    user: Literal["simulator", "magpie"] = Field(
        "simulator",
        description="simulator: the teacher plays the user (prompts/conversation/user.*); "
        "magpie: the model writes the next user turn from its chat template's pre-query",
    )
    user_sampling: SamplingConfig = Field(
        default_factory=lambda: SamplingConfig(temperature=0.9, max_tokens=128),
        description="sampling of the simulated user turns",
    )
    chat_template: str | None = Field(
        None,
        description="user: magpie: a GGUF or Hugging Face tokenizer whose chat template to "
        "use; default: the teacher's own model",
    )


class GenerateConfig(SamplingConfig):
    max_tokens: int | list[int] = Field(  # type: ignore[assignment]
        256,
        description="a token limit, or a ladder of rising ones: a sample cut off at one "
        "rung (finish_reason length) is asked again at the next; cut off at the top, it "
        "is rejected",
    )
    n: int = Field(1, ge=1, le=128, description="teacher samples per record")
    until: UntilConfig | None = Field(
        None, description="rejection sampling against a filter; replaces n"
    )
    system_prompt: str = Field(
        "none", description="a preset in prompts/system/ (none, plain, cot, orca) or literal text"
    )
    template: str = Field("default", description="a template name in prompts/generate/")
    batch_size: int = Field(64, ge=1, description="records resolved per dispatch batch")
    conversation: ConversationConfig | None = Field(
        None, description="multi-turn conversations instead of single answers"
    )
    response_format: str | dict[str, Any] | None = Field(
        None,
        description="json (any JSON object) or a JSON Schema (inline, or the path of a .json "
        "file beside the config) every answer must follow; a record's `schema` overrides it",
    )

    @field_validator("response_format")
    @classmethod
    def _json_or_schema(cls, value: str | dict[str, Any] | None) -> Any:
        if value is None:
            return value
        if isinstance(value, str) and value != "json":  # load_config has read any path
            raise PydanticCustomError(
                "schema_path", f"{value!r}: a schema file is read from a config file only"
            )
        problem = schema_error(value)
        if problem is not None:
            raise PydanticCustomError("schema", problem)
        return value

    @property
    def response_format_value(self) -> ResponseFormat | None:
        """The run's response format, None when it has none."""
        return ResponseFormat.of(self.response_format)

    @model_validator(mode="after")
    def _one_answer_per_turn(self) -> GenerateConfig:
        one_try = self.n == 1 and self.until is None and isinstance(self.max_tokens, int)
        if self.conversation is not None and not one_try:
            raise ValueError(
                "conversation mode answers each turn once: n: 1, no until and one max_tokens"
            )
        if self.conversation is not None and self.response_format is not None:
            raise ValueError("conversation mode takes no response_format (turns are prose)")
        return self

    @field_validator("max_tokens")
    @classmethod
    def _rising_ladder(cls, value: int | list[int]) -> int | list[int]:
        rungs = [value] if isinstance(value, int) else value
        if not rungs or any(rung < 1 for rung in rungs):
            raise ValueError("token limits must be at least 1, and a ladder needs one")
        if any(high <= low for low, high in pairwise(rungs)):
            raise ValueError(f"a ladder's limits must rise: {rungs}")
        return value

    @property
    def ladder(self) -> tuple[int, ...] | None:
        """The rungs of ``max_tokens: [...]``; None when it is one number."""
        return None if isinstance(self.max_tokens, int) else tuple(self.max_tokens)

    def sampling_params(
        self, extra_stop: tuple[str, ...] = (), max_tokens: int | None = None
    ) -> SamplingParams:
        """The first rung of a ladder unless ``max_tokens`` names another."""
        first = self.max_tokens if isinstance(self.max_tokens, int) else self.max_tokens[0]
        return replace(super().sampling_params(extra_stop), max_tokens=max_tokens or first)


class MagpieConfig(SamplingConfig):
    """The ``magpie`` stage: instructions an aligned model writes from its chat
    template's pre-query alone (Xu et al. 2024)."""

    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(128, ge=1)
    count: int = Field(100, ge=0, description="distinct instructions to keep")
    max_samples: int | None = Field(
        None, ge=1, description="samples drawn at most; default: twice count"
    )
    chat_template: str | None = Field(
        None,
        description="a GGUF or Hugging Face tokenizer (folder or id) whose chat template to "
        "use; default: the teacher's own model",
    )
    system_prompt: str | None = Field(None, description="a system message before the user turn")
    keep_truncated: bool = Field(False, description="keep instructions cut by max_tokens")
    batch_size: int = Field(16, ge=1, description="samples asked for at once")
    teacher: str | None = Field(
        None, description="the `teachers:` member that asks (default: the first)"
    )


EVOLVE_OPERATORS = (
    "add_constraints",
    "deepen",
    "concretize",
    "increase_reasoning",
    "complicate_input",
    "breadth",
)


class SelfInstructConfig(SamplingConfig):
    """The ``seed`` stage: seed loading and the Self-Instruct bootstrap (Wang et al. 2022)."""

    temperature: float = Field(0.7, ge=0.0, le=2.0)
    top_p: float = Field(0.5, gt=0.0, le=1.0)
    max_tokens: int = Field(1024, ge=1)
    presence_penalty: float = Field(2.0, ge=-2.0, le=2.0)
    seeds: SeedSourceConfig = Field(default_factory=SeedSourceConfig)
    target: int = Field(100, ge=0, description="machine-generated instructions to produce")
    seed_tasks_per_prompt: int = Field(6, ge=0, description="human seed tasks shown per request")
    machine_tasks_per_prompt: int = Field(2, ge=0, description="generated tasks shown per request")
    new_tasks_per_request: int = Field(7, ge=1, description="list items asked for per request")
    requests_per_round: int = Field(5, ge=1)
    max_rounds: int = Field(100, ge=1, description="stop even if target is not reached")
    instances: bool = Field(False, description="ask for an input and output with each task")
    include_seeds: bool = Field(True, description="write the seed tasks before the new ones")
    template: str = Field("tasks", description="a template name in prompts/self_instruct/")
    rouge_threshold: float = Field(0.7, gt=0.0, le=1.0, description="reject at or above")
    min_words: int = Field(4, ge=1)
    max_words: int = Field(150, ge=1)
    blacklist: list[str] | None = Field(
        None, description="default: prompts/self_instruct/blacklist.txt"
    )
    reject_prefixes: list[str] = Field(default_factory=lambda: ["Write a program"])
    teacher: str | None = Field(
        None, description="the `teachers:` member that asks (default: the first)"
    )


class EliminationConfig(StrictModel):
    """When an evolved instruction fails (Evol-Instruct's elimination, Xu et al. 2023)."""

    equality: Literal["teacher", "similarity", "off"] = Field(
        "teacher", description="no information gain: ask the teacher, or compare ROUGE-L"
    )
    similarity_threshold: float = Field(0.9, gt=0.0, le=1.0)
    equality_max_tokens: int = Field(8, ge=1)
    answer_check: bool = Field(True, description="fail when the teacher's answer says sorry")
    answer_max_tokens: int = Field(160, ge=1)
    sorry_max_words: int = Field(80, ge=1)

    def equality_params(self, stop: tuple[str, ...] = ()) -> SamplingParams:
        return SamplingParams(temperature=0.0, max_tokens=self.equality_max_tokens, stop=stop)

    def answer_params(self, stop: tuple[str, ...] = ()) -> SamplingParams:
        return SamplingParams(temperature=0.0, max_tokens=self.answer_max_tokens, stop=stop)


class EvolveConfig(SamplingConfig):
    """The ``evolve`` stage: Evol-Instruct's in-depth and in-breadth rewrites."""

    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    max_tokens: int = Field(512, ge=1)
    rounds: int = Field(4, ge=1)
    operators: dict[str, float] = Field(
        default_factory=lambda: dict.fromkeys(EVOLVE_OPERATORS, 1.0),
        description="operator -> weight of its seeded draw",
    )
    output: Literal["all", "evolved", "last"] = Field(
        "all",
        description="all: originals + survivors; evolved: survivors; last: the newest of each "
        "lineage (the original when nothing survived)",
    )
    batch_size: int = Field(16, ge=1, description="records evolved together, round by round")
    elimination: EliminationConfig = Field(default_factory=EliminationConfig)
    teacher: str | None = Field(
        None, description="the `teachers:` member that asks (default: the first)"
    )

    @field_validator("operators")
    @classmethod
    def _known_operators(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(EVOLVE_OPERATORS))
        if unknown:
            raise ValueError(
                f"unknown operator {unknown[0]!r} (known: {', '.join(EVOLVE_OPERATORS)})"
            )
        if any(weight < 0 for weight in value.values()) or not sum(value.values()) > 0:
            raise ValueError("weights must be >= 0 with a positive sum")
        return value


class ExecutorConfig(StrictModel):
    """Where model stages run: ``local`` (this process) or ``ray`` (actor pools on a Ray cluster).

    ``executor: ray`` is short for ``executor: {type: ray}``.
    """

    type: Literal["local", "ray"] = "local"
    address: str | None = Field(
        None, description="Ray cluster address; default: $RAY_ADDRESS, else a local Ray"
    )
    actors: int | None = Field(
        None, ge=1, description="actor pool size; default: cluster CPUs (or GPUs) per actor"
    )
    num_cpus: float = Field(1.0, gt=0, description="CPUs per actor (llama.cpp threads)")
    num_gpus: float = Field(0.0, ge=0, description="GPUs per actor (1 for a vLLM engine)")
    batch_size: int = Field(4, ge=1, description="teacher calls per actor batch")
    runtime_env: dict[str, Any] | None = Field(
        None, description="Ray runtime_env for the actors (pip, env_vars, working_dir)"
    )

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return {"type": value} if isinstance(value, str) else value

    def optional_modules(self) -> dict[str, str]:
        return {"ray": "ray"} if self.type == "ray" else {}


class ExportConfig(StrictModel):
    """How the export stage turns records into a training dataset."""

    format: str = Field(
        "messages",
        description="an export format (entry points `distillpipe.exporters`): messages, "
        "sharegpt, alpaca, prompt-completion, dpo, …",
    )
    conversational: bool = Field(
        True, description="prompt-completion and dpo: message lists (True) or plain strings"
    )
    responses: Literal["chosen", "all", "best-per-teacher"] = Field(
        "chosen",
        description="chosen: selection.chosen, else the first sample; all: every sample; "
        "best-per-teacher: each panel member's best-scored sample",
    )
    system_prompt: bool = Field(True, description="include the system prompt the teacher saw")
    include_reference: bool = Field(
        False, description="SFT formats: also the record's reference solution, where it has one"
    )
    reference_as: Literal["extra", "fallback"] = Field(
        "extra",
        description="extra: a row beside the teacher's; fallback: the answer only when no "
        "teacher sample passed",
    )
    reference_field: str | list[str] = Field(
        "reference", description="dot path(s) to the reference solution; the first present"
    )
    reasoning: Literal["inline", "field", "drop"] = Field(
        "inline",
        description="a response's reasoning trace: inline (<think>…</think> before the "
        "answer), field (reasoning_content on the assistant message) or drop",
    )
    reasoning_tags: tuple[str, str] = Field(
        ("<think>", "</think>"), description="inline: the opening and closing tags"
    )
    json_style: JsonStyle = Field(
        "compact",
        description="a parsed answer (the format filter's) as JSON text: canonical (sorted "
        "keys), compact (the model's key order) or pretty (indented)",
    )
    shuffle: bool = Field(True, description="seeded by config.seed and record ids")
    validation: int | float = Field(
        0, ge=0, description="validation split: a fraction in (0, 1) or a record count"
    )
    max_records: int | None = Field(None, ge=1)
    logprobs: bool = Field(False, description="write the teacher's top-k logprobs sidecar")
    save_to_disk: bool = Field(False, description="also a Hugging Face dataset (save_to_disk)")
    parquet: bool = Field(False, description="also Parquet files under data/")
    push_to_hub: str | None = Field(None, description="a Hub repo id to push the dataset to")
    private: bool = True
    dataset_card: bool = Field(True, description="README.md with config, counts and terms")

    @field_validator("validation")
    @classmethod
    def _fraction_or_count(cls, value: int | float) -> int | float:
        if isinstance(value, float) and value >= 1 and not value.is_integer():
            raise ValueError("a fraction must be below 1; a count must be a whole number")
        return int(value) if isinstance(value, float) and value >= 1 else value

    @field_validator("format")
    @classmethod
    def _registered_format(cls, value: str) -> str:
        known = registry.names(registry.EXPORTERS)
        if value not in known:
            raise PydanticCustomError(
                "unknown_format", f"format {value!r} unknown (known: {', '.join(known)})"
            )
        return value

    @model_validator(mode="after")
    def _reference_rows_are_sft(self) -> ExportConfig:
        if self.include_reference and self._exporter().pairs:
            raise ValueError(
                f"include_reference adds SFT rows; a {self.format} pair needs two samples"
            )
        return self

    def _exporter(self) -> Any:
        return registry.load_plugin(registry.EXPORTERS, self.format, "export.format")

    @property
    def reference_fields(self) -> list[str]:
        field = self.reference_field
        return [field] if isinstance(field, str) else list(field)


class PriceConfig(StrictModel):
    input: float = Field(ge=0, description="USD per million prompt tokens")
    output: float = Field(ge=0, description="USD per million completion tokens")
    batch_discount: float = Field(0.5, gt=0, le=1, description="price factor in batch mode")


class CostConfig(StrictModel):
    prices: dict[str, PriceConfig] = Field(
        default_factory=dict, description="model-name prefix -> price; overrides the built-ins"
    )
    max_cost: float | None = Field(None, gt=0, description="USD; same as --max-cost")


PROVIDER_BATCH_RECORDS = 10_000  # within OpenAI's 50,000 and Anthropic's 100,000 a batch


class Config(StrictModel):
    name: str = Field("run", pattern=r"^[A-Za-z0-9._-]+$")
    seed: int = 0
    input: str | None = Field(
        None, description="what `run` starts from: records JSONL or a seed input (hf:<id>, folder…)"
    )
    run_dir: str = "runs"
    prompts_dir: str | None = Field(
        None,
        description="a folder whose files shadow the packaged prompts of the same relative "
        "name (generate/default.chat.jinja…); relative to the config's folder",
    )
    cache: CacheConfig = Field(default_factory=CacheConfig)
    teacher: SerializeAsAny[TeacherOptions]
    teachers: list[PanelMember] | None = Field(
        None, description="a panel of named teachers (teachers/members.py); `teacher` is the first"
    )
    generate: GenerateConfig = Field(default_factory=GenerateConfig)
    self_instruct: SelfInstructConfig | None = None
    magpie: MagpieConfig | None = None
    evolve: EvolveConfig | None = None
    filter: list[SerializeAsAny[FilterOptions]] | None = Field(
        None, description="filters applied in order; each item picks its filter by `type`"
    )
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    export: ExportConfig | None = None
    cost: CostConfig = Field(default_factory=CostConfig)

    _secrets: frozenset[str] = PrivateAttr(default=frozenset())
    _plugin_sections: dict[str, StageOptions] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _provider_batches_hold_many_requests(self) -> Config:
        """In ``teacher.mode: batch`` each dispatch batch becomes one provider batch; 64
        requests a batch would make 100,000 prompts into 1,500 batches, each queued on
        the provider's side for minutes to hours. Unless the config says otherwise, a
        dispatch batch then holds PROVIDER_BATCH_RECORDS records."""
        if (
            getattr(self.teacher, "mode", None) == "batch"
            and "batch_size" not in self.generate.model_fields_set
        ):
            self.generate.batch_size = PROVIDER_BATCH_RECORDS
        return self

    def panel_members(self) -> list[PanelMember]:
        """The ``teachers:`` panel; a plain ``teacher:`` is a panel of one."""
        return list(self.teachers) if self.teachers else [single_member(self.teacher)]

    def member(self, name: str | None = None) -> PanelMember:
        """The member named ``name`` (validated at load); the first when None."""
        members = self.panel_members()
        return next((m for m in members if m.name == name), members[0])

    @property
    def export_section(self) -> ExportConfig:
        """The export settings; defaults when the config has no ``export`` section."""
        return self.export or ExportConfig()

    def section(self, name: str) -> Any:
        """A section by its key: a built-in one, or a plug-in stage's (None: not set)."""
        if name in type(self).model_fields:
            return getattr(self, name)
        return self._plugin_sections.get(name)

    def public_dump(self) -> dict[str, Any]:
        """The resolved config as JSON data with every secret replaced by ***: what the
        manifest, the dataset card, the report and ``config show`` hold. Plug-in stages'
        sections stand at the top level, as in the file."""
        dumped = self.model_dump(mode="json")
        for name, options in self._plugin_sections.items():
            dumped[name] = options.model_dump(mode="json")
        return redact(dumped, self._secrets)

    def optional_modules(self) -> dict[str, str]:
        """Every optional import this run needs (module -> the extra that installs it)."""
        modules = self.executor.optional_modules()
        for options in self.filter or []:
            modules |= options.optional_modules()
        return modules

    def fingerprint(self, *sections: str) -> str:
        """A hash of the named sections (all when none), secrets excluded."""
        dumped = self.public_dump()
        if sections:
            dumped = {name: dumped.get(name) for name in sections}
        return content_hash(dumped)


class ConfigSource:
    """Where the config came from, to turn a key path into ``file:line``."""

    def __init__(self, path: str, root: yaml.Node | None) -> None:
        self.path = path
        self.root = root

    def where(self, loc: tuple[str | int, ...]) -> str:
        node, line = self.root, None
        for part in loc:
            if isinstance(node, yaml.MappingNode):
                match = next((v for k, v in node.value if k.value == part), None)
                key = next((k for k, _ in node.value if k.value == part), None)
                if match is None:
                    break
                line = (key or match).start_mark.line + 1
                node = match
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
                if part >= len(node.value):
                    break
                node = node.value[part]
                line = node.start_mark.line + 1
            else:
                break
        return f"{self.path}:{line}" if line else self.path


def _dotted(loc: tuple[str | int, ...]) -> str:
    return ".".join(str(part) for part in loc)


def _raise_validation(error: ValidationError, prefix: tuple[str, ...], source: ConfigSource):
    first = error.errors()[0]
    loc = prefix + tuple(p for p in first["loc"] if not str(p).startswith("function-"))
    if first["type"] == "extra_forbidden":
        message = f"unknown key {_dotted(loc)!r}"
    else:
        message = f"{_dotted(loc)}: {first['msg']}"
    raise ConfigError(f"{source.where(loc)}: {message}") from None


def interpolate(
    value: Any, source: ConfigSource, secrets: set[str], loc: tuple[str | int, ...] = ()
) -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string of the tree.

    Values read from variables named like secrets are collected in ``secrets``
    so they can be redacted wherever they end up.
    """
    if isinstance(value, dict):
        return {k: interpolate(v, source, secrets, (*loc, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, source, secrets, (*loc, i)) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            if is_secret_name(name) and os.environ[name]:
                secrets.add(os.environ[name])
            return os.environ[name]
        if default is not None:
            return default
        raise ConfigError(
            f"{source.where(loc)}: {_dotted(loc)}: environment variable {name} is not set"
        )

    return _ENV_REFERENCE.sub(substitute, value)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``--set a.b=c``: the value is parsed as YAML, so numbers and lists keep their type."""
    for override in overrides:
        path, sep, raw = override.partition("=")
        if not sep or not path.strip():
            raise ConfigError(f"--set {override!r}: expected KEY=VALUE, e.g. generate.n=4")
        node = data
        parts = path.strip().split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {override!r}: {part} is not a section")
            node = child
        node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else ""
    return data


def parse_config(data: dict[str, Any], source: ConfigSource) -> Config:
    secrets: set[str] = set()
    data = interpolate(data, source, secrets)
    secrets |= secret_values(data)
    members = None
    if data.get("teachers") is not None:
        if data.get("teacher") is not None:
            raise ConfigError(
                f"{source.where(('teachers',))}: teachers: and teacher: exclude each other; "
                "a single teacher is a panel of one: list it under teachers:"
            )
        members = parse_teachers(data["teachers"], source)
        data = {**data, "teachers": members, "teacher": members[0].teacher}
    teacher_raw = data.get("teacher") or {"backend": "llamacpp"}
    if isinstance(teacher_raw, TeacherOptions):
        options = teacher_raw
    elif not isinstance(teacher_raw, dict):
        raise ConfigError(f"{source.where(('teacher',))}: teacher must be a mapping")
    else:
        options = _teacher_options(teacher_raw, ("teacher",), source)
    data = {**data, "teacher": options}
    if data.get("filter") is not None:
        data["filter"] = parse_filters(data["filter"], source)
    data, plugin_sections = parse_plugin_sections(data, source)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        _raise_validation(exc, (), source)
    config._plugin_sections = plugin_sections
    _check_members_named(config, source)
    _check_teacher_takes(config, source)
    _check_panel_modes(config, source)
    _check_until(config, source)
    _check_raw_prompts(config, source)
    config._secrets = frozenset(secrets)
    return config


def _teacher_options(raw: dict[str, Any], loc: Loc, source: ConfigSource) -> TeacherOptions:
    """A teacher block validated by its backend's ``Options``."""
    raw = {"backend": "llamacpp", **raw}
    try:
        options_cls = teacher_class(str(raw["backend"])).Options
    except ConfigError as exc:
        raise ConfigError(f"{source.where((*loc, 'backend'))}: {exc}") from None
    try:
        return options_cls.model_validate(raw)
    except ValidationError as exc:
        _raise_validation(exc, loc, source)
    raise AssertionError("unreachable")


def parse_teachers(raw: Any, source: ConfigSource) -> list[PanelMember]:
    """The ``teachers:`` list: each item a named teacher block (``teachers/members.py``)."""
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{source.where(('teachers',))}: teachers must be a list of teachers")
    members: list[PanelMember] = []
    for index, item in enumerate(raw):
        loc: Loc = ("teachers", index)
        if not isinstance(item, dict) or not item.get("name"):
            raise ConfigError(
                f"{source.where(loc)}: teachers[{index}].name: each teacher needs one"
            )
        member_raw, block = split_member(item)
        options = _teacher_options(block, loc, source)
        try:
            member = PanelMember.model_validate({**member_raw, "teacher": options})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = (*loc, *(p for p in first["loc"] if not str(p).startswith("function-")))
            key = ".".join(str(p) for p in where[2:])
            raise ConfigError(
                f"{source.where(where)}: teachers[{index}].{key}: {first['msg']}"
            ) from None
        if any(m.name == member.name for m in members):
            raise ConfigError(
                f"{source.where((*loc, 'name'))}: teachers[{index}].name: a second teacher "
                f"named {member.name!r}; names must be unique"
            )
        members.append(member)
    if not any(member.answers for member in members):
        raise ConfigError(
            f"{source.where(('teachers',))}: teachers: every member has share: 0; "
            "at least one must answer"
        )
    return members


def member_names_used(config: Config) -> Iterator[tuple[Loc, str | None]]:
    """Where a stage names the panel member that asks for it (None: the first)."""
    for section in ("self_instruct", "evolve", "magpie"):
        options = getattr(config, section)
        if options is not None:
            yield (section, "teacher"), options.teacher
    for index, options in enumerate(config.filter or []):
        if hasattr(options, "teacher"):
            yield ("filter", index, "teacher"), options.teacher


def _check_members_named(config: Config, source: ConfigSource) -> None:
    """A stage's ``teacher: NAME`` names a ``teachers:`` member."""
    names = [m.name for m in config.teachers or []]
    for loc, name in member_names_used(config):
        if name is None or name in names:
            continue
        known = ", ".join(names) if names else "none: the config has a single `teacher:`"
        raise ConfigError(
            f"{source.where(loc)}: {_dotted(loc)}: no teacher named {name!r} in teachers: "
            f"(named: {known})"
        )


def _check_panel_modes(config: Config, source: ConfigSource) -> None:
    """What a panel of several teachers does not do (yet): one line naming the key."""
    if not config.teachers or len(config.teachers) < 2:
        return
    for key in ("until", "conversation"):
        if getattr(config.generate, key) is not None:
            loc: Loc = ("generate", key)
            raise ConfigError(
                f"{source.where(loc)}: generate.{key}: not supported with several teachers: "
                "use one teacher, or drop it"
            )


def parse_plugin_sections(
    data: dict[str, Any], source: ConfigSource
) -> tuple[dict[str, Any], dict[str, StageOptions]]:
    """The plug-in stages' sections, each validated by its stage's ``Options``, and the
    rest of the config. A top-level key no stage declares stays, to fail as unknown."""
    extra = [key for key in data if key not in Config.model_fields]
    if not extra:
        return data, {}
    declared = {
        stage.section: stage.Options
        for stage in registry.load_all(registry.STAGES).values()
        if getattr(stage, "Options", None) is not None
    }
    rest, sections = dict(data), {}
    for key in extra:
        if key not in declared:
            continue
        raw = rest.pop(key)
        try:
            sections[key] = declared[key].model_validate({} if raw is None else raw)
        except ValidationError as exc:
            _raise_validation(exc, (key,), source)
    return rest, sections


def teacher_sampling(config: Config) -> Iterator[tuple[Loc, dict[str, str], SamplingParams]]:
    """Each kind of request the config's stages send the teacher: where it is set, the
    config key of each sampling parameter that is not spelled the same, the parameters."""
    for rung in config.generate.ladder or (None,):  # every rung of a ladder is sent
        yield ("generate",), {}, config.generate.sampling_params(max_tokens=rung)
    if config.self_instruct is not None:
        yield ("self_instruct",), {}, config.self_instruct.sampling_params()
    if config.magpie is not None:
        yield ("magpie",), {}, config.magpie.sampling_params()
    if config.generate.conversation is not None:
        where = ("generate", "conversation", "user_sampling")
        yield where, {}, config.generate.conversation.user_sampling.sampling_params()
    if config.evolve is not None:
        yield ("evolve",), {}, config.evolve.sampling_params()
        checks, where = config.evolve.elimination, ("evolve", "elimination")
        if checks.equality == "teacher":
            yield where, {"max_tokens": "equality_max_tokens"}, checks.equality_params()
        if checks.answer_check:
            yield where, {"max_tokens": "answer_max_tokens"}, checks.answer_params()
    for name, section in config._plugin_sections.items():  # a plug-in stage's own sampling
        if isinstance(section, SamplingConfig):
            yield (name,), {}, section.sampling_params()
    for index, options in enumerate(config.filter or []):
        params = options.teacher_params()
        if params is not None:
            yield ("filter", index), {}, params


def _check_teacher_takes(config: Config, source: ConfigSource) -> None:
    """What the teacher's model would reject fails here, naming the key, not at the first
    call (the per-model rules: teachers/model_rules.yaml). In a panel each member is
    checked for what it is sent: generate's sampling (its overrides applied) and the
    stages that name it."""
    if config.teachers is None:
        response_format = config.generate.response_format_value
        _check_takes(
            config.teacher, ("teacher",), teacher_sampling(config), source, response_format
        )
        return
    used = dict(member_names_used(config))
    for index, member in enumerate(config.teachers):
        wanted = []
        overridden = member.sampling.model_fields_set
        for where, names, params in teacher_sampling(config):
            if where == ("generate",):
                own = ("teachers", index, "sampling")  # a member's override names its key
                names = {key: f"{_dotted(own)}.{key}" for key in overridden}
                wanted.append((where, names, member.sampling.apply(params)))
                continue
            # the section that names the member ("evolve", ("filter", 2)) holds ``where``
            name = next((v for k, v in used.items() if where[: len(k) - 1] == k[:-1]), None)
            if (name or config.teachers[0].name) == member.name:
                wanted.append((where, names, params))
        response_format = config.generate.response_format_value if member.answers else None
        _check_takes(member.teacher, ("teachers", index), iter(wanted), source, response_format)


def _check_takes(
    options: TeacherOptions,
    prefix: Loc,
    sampling: Iterator[tuple[Loc, dict[str, str], SamplingParams]],
    source: ConfigSource,
    response_format: ResponseFormat | None,
) -> None:
    problem = options.option_problem()
    if problem is not None:
        loc = (*prefix, problem[0])
        raise ConfigError(f"{source.where(loc)}: {_dotted(loc)}: {problem[1]}")
    if response_format is not None:
        problem = options.schema_problem(response_format)
        if problem is not None:
            loc = ("generate", "response_format")
            own = _dotted((*prefix, problem[0]))
            raise ConfigError(f"{source.where(loc)}: {_dotted(loc)}: {problem[1]} ({own})")
    for where, names, params in sampling:
        problem = options.sampling_problem(params)
        if problem is not None:
            key = names.get(problem[0], problem[0])
            if key.startswith("teachers."):  # a member's own key: teachers[1].sampling.top_p
                index, rest = key.split(".", 2)[1:]
                source_loc: Loc = ("teachers", int(index), *rest.split("."))
                raise ConfigError(
                    f"{source.where(source_loc)}: teachers[{index}].{rest}: {problem[1]}"
                )
            loc = (*where, key)
            raise ConfigError(f"{source.where(loc)}: {_dotted(loc)}: {problem[1]}")


def _check_until(config: Config, source: ConfigSource) -> None:
    """``generate.until.filter`` names a filter of the ``filter:`` list that judges samples."""
    until = config.generate.until
    if until is None:
        return
    if "n" in config.generate.model_fields_set:
        loc: Loc = ("generate", "n")
        raise ConfigError(
            f"{source.where(loc)}: generate.n: not used with generate.until (it draws "
            "`step` samples a round); remove one"
        )
    loc = ("generate", "until", "filter")
    found = [o for o in config.filter or [] if o.filter_name == until.filter]
    if not found:
        names = ", ".join(o.filter_name for o in config.filter or []) or "none"
        raise ConfigError(
            f"{source.where(loc)}: generate.until.filter: no filter named {until.filter!r} "
            f"in `filter:` (named: {names})"
        )
    problem = found[0].cannot_judge_samples()
    if problem is not None:
        raise ConfigError(
            f"{source.where(loc)}: generate.until.filter: {until.filter!r} cannot decide "
            f"which samples pass: {problem}"
        )


def _check_raw_prompts(config: Config, source: ConfigSource) -> None:
    """Magpie sends raw prompts cut from a chat template: the teacher must take them."""
    conversation = config.generate.conversation
    wanted = [("magpie",)] if config.magpie is not None else []
    if conversation is not None and conversation.user == "magpie":
        wanted.append(("generate", "conversation", "user"))
    asking = config.member(config.magpie.teacher if config.magpie else None).teacher
    if wanted and asking.mode != "completion":
        loc: Loc = wanted[0]
        raise ConfigError(
            f"{source.where(loc)}: {_dotted(loc)}: Magpie sends raw prompts; set "
            "teacher.mode: completion (llamacpp, vllm or a completions endpoint)"
        )


def until_filter(config: Config) -> FilterOptions:
    """The options of the filter ``generate.until`` samples against (validated at load)."""
    assert config.generate.until is not None
    name = config.generate.until.filter
    return next(o for o in config.filter or [] if o.filter_name == name)


def parse_filters(raw: Any, source: ConfigSource) -> list[FilterOptions]:
    """Each item of the ``filter`` list is validated by the Options of its ``type``."""
    if not isinstance(raw, list):
        raise ConfigError(f"{source.where(('filter',))}: filter must be a list of filters")
    parsed = []
    for index, item in enumerate(raw):
        loc = ("filter", index)
        if not isinstance(item, dict) or "type" not in item:
            raise ConfigError(f"{source.where(loc)}: filter.{index}: needs a `type`")
        try:
            options_cls = filter_class(str(item["type"])).Options
        except ConfigError as exc:
            raise ConfigError(f"{source.where((*loc, 'type'))}: filter.{index}: {exc}") from None
        try:
            parsed.append(options_cls.model_validate(item))
        except ValidationError as exc:
            _raise_validation(exc, loc, source)
    names = [options.filter_name for options in parsed]
    for index, name in enumerate(names):
        if name in names[:index]:
            raise ConfigError(
                f"{source.where(('filter', index))}: filter.{index}: a second filter named "
                f"{name!r}; give it its own `name`"
            )
    return parsed


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    path = str(path)
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else path
        raise ConfigError(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a mapping of sections")
    data = apply_overrides(data, overrides or [])
    source = ConfigSource(path, root)
    _read_schema_files(data, source)
    config = parse_config(data, source)
    if config.prompts_dir is not None:
        folder = Path(config.prompts_dir).expanduser()
        folder = folder if folder.is_absolute() else Path(path).parent / folder
        if not folder.is_dir():
            raise ConfigError(f"{source.where(('prompts_dir',))}: no such folder: {folder}")
        config.prompts_dir = str(folder)
    for section in (config.magpie, config.generate.conversation):
        if section is not None and section.chat_template is not None:
            section.chat_template = beside_config(section.chat_template, path)
    for options in config._plugin_sections.values():
        options.beside_config(Path(path))
    return config


def _read_schema_files(data: dict[str, Any], source: ConfigSource) -> None:
    """``generate.response_format: schema.json`` (and a format filter's ``schema``): the
    schema the file beside the config holds takes the path's place, so its content
    enters the stages' hashes."""
    generate: Loc = ("generate", "response_format")
    sections: list[tuple[Any, str, Loc]] = [(data.get("generate"), "response_format", generate)]
    filters = data.get("filter")
    for index, item in enumerate(filters if isinstance(filters, list) else []):
        sections.append((item, "schema", ("filter", index, "schema")))
    for section, key, loc in sections:
        value = section.get(key) if isinstance(section, dict) else None
        if not isinstance(value, str) or value == "json":
            continue
        assert isinstance(section, dict)
        path = Path(value).expanduser()
        path = path if path.is_absolute() else Path(source.path).parent / path
        section[key] = load_schema_file(path, f"{source.where(loc)}: {_dotted(loc)}")


def beside_config(value: str, config_path: str | Path) -> str:
    """A relative path that names a file or folder beside the config becomes that path;
    anything else (a Hugging Face id) stays as written."""
    candidate = Path(value).expanduser()
    if not candidate.is_absolute() and (Path(config_path).parent / candidate).exists():
        return str(Path(config_path).parent / candidate)
    return str(candidate) if candidate.is_absolute() else value


def show(config: Config) -> str:
    return yaml.safe_dump(config.public_dump(), sort_keys=False)
