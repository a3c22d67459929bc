"""How each language runs: a command template, a file name and its code fences.

Another language is one more entry (in a config's ``languages:`` or here):

    ruby: {command: [ruby, "{file}"], file: main.rb, fences: [ruby, rb]}

Placeholders: ``{file}`` the program's path inside the sandbox, ``{python}``
this interpreter, ``{memory_mb}`` the run's memory limit. ``check`` is the
line appended after the tests when a record names an entry point
(HumanEval's ``check(candidate)``).
"""

from __future__ import annotations

import sys

from pydantic import BaseModel, ConfigDict, Field

from distillpipe.errors import ConfigError


class Language(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    command: tuple[str, ...] = Field(description="argv; {file}, {python}, {memory_mb}")
    file: str = Field(description="the program's file name")
    fences: tuple[str, ...] = Field((), description="code-fence tags that mean this language")
    check: str | None = Field(None, description="the entry-point check, with {entry_point}")
    address_space_mb: int | None = Field(
        None, description="RLIMIT_AS for runtimes that reserve more than they use (V8)"
    )

    def argv(self, directory: str, memory_mb: int) -> tuple[str, ...]:
        values = {
            "file": f"{directory}/{self.file}",
            "python": sys.executable,
            "memory_mb": str(memory_mb),
        }
        return tuple(part.format(**values) for part in self.command)


BUILTIN: dict[str, Language] = {
    # -I -S: no site import, no user paths, no PYTHON* variables: the stdlib only, and
    # a start-up about 4x cheaper than a plain `python` with a full site-packages
    "python": Language(
        command=("{python}", "-I", "-S", "{file}"),
        file="main.py",
        fences=("python", "py", "python3"),
        check="check({entry_point})",
    ),
    # V8 reserves gigabytes of address space it never touches: its heap is capped instead
    "node": Language(
        command=("node", "--max-old-space-size={memory_mb}", "{file}"),
        file="main.js",
        fences=("javascript", "js", "node", "nodejs"),
        check="check({entry_point});",
        address_space_mb=8192,
    ),
    "bash": Language(
        command=("bash", "{file}"),
        file="main.sh",
        fences=("bash", "sh", "shell", "console"),
    ),
}


def languages(extra: dict[str, Language] | None = None) -> dict[str, Language]:
    return {**BUILTIN, **(extra or {})}


def language_named(name: str, known: dict[str, Language]) -> Language:
    if name not in known:
        raise ConfigError(f"language {name!r} has no command (known: {', '.join(known)})")
    return known[name]
