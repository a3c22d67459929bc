"""The YAML config: pydantic models, ``${ENV}`` interpolation, ``--set`` overrides.

Every validation error becomes one ConfigError line naming the key, the file
and the line the key stands on. The ``teacher:`` block is validated by the
chosen backend's own ``Options`` model, found through the teacher registry.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SerializeAsAny,
    ValidationError,
)

from distillpipe.errors import ConfigError
from distillpipe.records import content_hash
from distillpipe.teachers.base import SamplingParams, TeacherOptions, teacher_class

_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_SECRET_NAME = re.compile(r"(api_?key|token|secret|password|authorization)", re.IGNORECASE)
REDACTED = "***"


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


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


class GenerateConfig(SamplingConfig):
    n: int = Field(1, ge=1, le=128, description="teacher samples per record")
    system_prompt: str = Field(
        "none", description="a preset in prompts/system/ (none, plain, cot, orca) or literal text"
    )
    template: str = Field("default", description="a template name in prompts/generate/")
    batch_size: int = Field(64, ge=1, description="records resolved per dispatch batch")


class PriceConfig(StrictModel):
    input: float = Field(ge=0, description="USD per million prompt tokens")
    output: float = Field(ge=0, description="USD per million completion tokens")
    batch_discount: float = Field(0.5, gt=0, le=1, description="price factor in batch mode")


class CostConfig(StrictModel):
    prices: dict[str, PriceConfig] = Field(
        default_factory=dict, description="model-name prefix -> price; overrides the built-ins"
    )
    max_cost: float | None = Field(None, gt=0, description="USD; same as --max-cost")


class Config(StrictModel):
    name: str = Field("run", pattern=r"^[A-Za-z0-9._-]+$")
    seed: int = 0
    input: str | None = Field(None, description="records JSONL that `run` starts from")
    run_dir: str = "runs"
    cache: CacheConfig = Field(default_factory=CacheConfig)
    teacher: SerializeAsAny[TeacherOptions]
    generate: GenerateConfig = Field(default_factory=GenerateConfig)
    cost: CostConfig = Field(default_factory=CostConfig)

    _secrets: frozenset[str] = PrivateAttr(default=frozenset())

    def public_dump(self) -> dict[str, Any]:
        """The resolved config as JSON data with every secret replaced by ***."""
        return redacted(self.model_dump(mode="json"), secrets=self._secrets)

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
            if _SECRET_NAME.search(name) and os.environ[name]:
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
    teacher_raw = data.get("teacher") or {"backend": "llamacpp"}
    if not isinstance(teacher_raw, dict):
        raise ConfigError(f"{source.where(('teacher',))}: teacher must be a mapping")
    teacher_raw.setdefault("backend", "llamacpp")
    try:
        options_cls = teacher_class(str(teacher_raw["backend"])).Options
    except ConfigError as exc:
        raise ConfigError(f"{source.where(('teacher', 'backend'))}: {exc}") from None
    try:
        options = options_cls.model_validate(teacher_raw)
    except ValidationError as exc:
        _raise_validation(exc, ("teacher",), source)
    try:
        config = Config.model_validate({**data, "teacher": options})
    except ValidationError as exc:
        _raise_validation(exc, (), source)
    config._secrets = frozenset(secrets)
    return config


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
    return parse_config(data, ConfigSource(path, root))


def redacted(value: Any, key: str = "", secrets: frozenset[str] = frozenset()) -> Any:
    """Secrets replaced by ***: keys named like api_key/token/secret/password, and
    any string holding a value that came from a secret environment variable."""
    if isinstance(value, dict):
        return {k: redacted(v, k, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [redacted(v, key, secrets) for v in value]
    if not isinstance(value, str) or not value:
        return value
    if _SECRET_NAME.search(key) and not key.endswith("_env"):
        return REDACTED
    for secret in secrets:
        value = value.replace(secret, REDACTED)
    return value


def show(config: Config) -> str:
    return yaml.safe_dump(config.public_dump(), sort_keys=False)
