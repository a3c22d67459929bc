"""``distillpipe doctor``: check what a run needs before it spends time or money.

Each check returns a :class:`Finding`: what it looked at, whether it is fine,
and one sentence — what was found, or what to do. Anything that could crash
(llama.cpp built for another CPU, a broken native extension) runs in a child
process, so the crash is reported rather than suffered. Nothing here prints a
secret: the key check says which variable is set, never its value.
"""

from __future__ import annotations

import importlib.util
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from distillpipe.cache import ResponseCache, default_cache_path
from distillpipe.config import Config, load_config
from distillpipe.errors import DistillpipeError
from distillpipe.llama_build import rebuild_command
from distillpipe.teachers.base import teacher_class

PROBE_TIMEOUT = 180.0
ENDPOINT_TIMEOUT = 10.0

# Loads a GGUF and generates a few tokens; run with the GGUF path as argv[1].
_LLAMA_PROBE = """
import sys, time
from llama_cpp import Llama
started = time.perf_counter()
llm = Llama(model_path=sys.argv[1], n_ctx=256, n_threads=1, verbose=False)
out = llm("The capital of France is", max_tokens=4, temperature=0.0)
print(out["usage"]["completion_tokens"], round(time.perf_counter() - started, 2))
"""


@dataclass(frozen=True, slots=True)
class Finding:
    check: str
    ok: bool
    detail: str


def check_config(path: Path, overrides: list[str]) -> tuple[Config | None, Finding]:
    try:
        config = load_config(path, overrides)
    except DistillpipeError as exc:
        return None, Finding("config", False, str(exc))
    return config, Finding("config", True, f"{path} is valid")


def check_gguf(path: Path, label: str, timeout: float = PROBE_TIMEOUT) -> Finding:
    """Load the model and generate a few tokens in a child process."""
    check = f"llama.cpp: {label}"
    try:
        done = subprocess.run(
            [sys.executable, "-c", _LLAMA_PROBE, str(path)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return Finding(check, False, f"{path} did not load and answer within {timeout:.0f} s.")
    if done.returncode == -signal.SIGILL:
        return Finding(
            check,
            False,
            "llama.cpp died with an illegal instruction: it was built for another CPU "
            f"(native flags, AMX); rebuild it portably with `{rebuild_command()}`.",
        )
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        return Finding(check, False, f"loading {path} crashed with {name}: {_tail(done.stderr)}")
    if done.returncode != 0:
        return Finding(check, False, f"{path} did not load: {_tail(done.stderr)}")
    tokens, seconds = done.stdout.split()[-2:]
    return Finding(check, True, f"{path.name} loads and generates ({tokens} tokens, {seconds} s)")


def check_cache(config: Config | None) -> Finding:
    path = Path(config.cache.path) if config and config.cache.path else default_cache_path()
    if config is not None and not config.cache.enabled:
        return Finding("cache", True, "the response cache is switched off (cache.enabled: false)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".doctor."):
            pass
        ResponseCache(path).close()
    except (OSError, DistillpipeError) as exc:
        return Finding(
            "cache",
            False,
            f"{path} is not writable ({exc}); set cache.path or $DISTILLPIPE_CACHE_DIR "
            "to a folder you can write.",
        )
    return Finding("cache", True, f"{path} is writable")


def check_modules(config: Config) -> list[Finding]:
    findings = []
    for module, extra in sorted(config.optional_modules().items()):
        check = f"import {module}"
        if importlib.util.find_spec(module) is None:
            findings.append(
                Finding(check, False, f"not installed: pip install 'distillpipe[{extra}]'")
            )
            continue
        # imported in a child: a broken native extension may crash the interpreter
        done = subprocess.run(
            [sys.executable, "-c", f"import {module}"], capture_output=True, text=True
        )
        if done.returncode != 0:
            detail = _tail(done.stderr) or f"exit status {done.returncode}"
            findings.append(Finding(check, False, f"fails to import: {detail}"))
        else:
            findings.append(Finding(check, True, "importable"))
    return findings


def check_teacher(config: Config) -> list[Finding]:
    """The teacher builds (its API key is there) and its endpoint answers."""
    backend = config.teacher.backend
    try:
        teacher = teacher_class(backend)(config.teacher)
    except DistillpipeError as exc:
        return [Finding(f"teacher {backend}", False, str(exc))]
    key_env = getattr(config.teacher, "api_key_env", None)
    findings = []
    if getattr(teacher, "api_key", None):
        source = "teacher.api_key" if getattr(config.teacher, "api_key", None) else key_env
        findings.append(Finding(f"teacher {backend}", True, f"API key found in {source}"))
    base_url = getattr(config.teacher, "base_url", None)
    if base_url:
        findings.append(check_endpoint(base_url, getattr(config.teacher, "launch", None)))
    return findings


def check_endpoint(base_url: str, launch: object = None) -> Finding:
    """Any HTTP answer (even 401 or 404) means a server is there."""
    check = f"endpoint {base_url}"
    try:
        with urllib.request.urlopen(base_url, timeout=ENDPOINT_TIMEOUT):
            pass
    except urllib.error.HTTPError:
        pass
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if launch is not None:
            program = launch.command[0].format(python=sys.executable)  # type: ignore[attr-defined]
            if shutil.which(program) is None:
                return Finding(check, False, f"not running, and {program!r} is not on PATH.")
            return Finding(check, True, f"not running yet; distillpipe starts it with {program}")
        return Finding(
            check, False, f"does not answer ({reason}); start the server or fix base_url."
        )
    return Finding(check, True, "answers")


def run_checks(config_path: Path | None, overrides: list[str]) -> list[Finding]:
    from distillpipe.models import embedded_gguf_path

    findings: list[Finding] = []
    config = None
    if config_path is not None:
        config, finding = check_config(config_path, overrides)
        findings.append(finding)
    findings.append(check_gguf(embedded_gguf_path(), "embedded model"))
    model_path = getattr(config.teacher, "model_path", None) if config else None
    if model_path:
        findings.append(check_gguf(Path(model_path).expanduser(), "teacher.model_path"))
    findings.append(check_cache(config))
    if config is not None:
        findings += check_modules(config)
        findings += check_teacher(config)
    return findings


def _tail(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""
