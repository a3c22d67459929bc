"""Every prompt template is a file in this folder; this module loads and renders them.

Templates are Jinja2 (``StrictUndefined``: a missing variable is an error, not
an empty string). Chat and completion variants sit side by side as
``NAME.chat.jinja`` and ``NAME.completion.jinja``.

A config's ``prompts_dir`` names a folder whose files shadow the packaged ones
of the same relative name; ``prompts_for(config)`` gives the loader that sees
both, and ``Prompts.overrides_hash`` the hash a stage's manifest entry keeps of
the override files it may read.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from distillpipe.errors import ConfigError

PROMPTS_DIR = Path(__file__).parent
_NOT_PROMPTS = ("__init__.py", "__pycache__")


class Prompts:
    """The packaged prompt files, each shadowed by a file of the same relative name
    in ``overrides`` when there is one."""

    def __init__(self, overrides: Path | None = None) -> None:
        self.overrides = overrides
        folders = [overrides, PROMPTS_DIR] if overrides is not None else [PROMPTS_DIR]
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(folders),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            autoescape=False,
        )
        self._texts: dict[tuple[Path, int], str] = {}

    def _where(self) -> str:
        return f"{self.overrides} or {PROMPTS_DIR}" if self.overrides else str(PROMPTS_DIR)

    def path(self, name: str) -> Path:
        """The file ``name`` resolves to: the override if there is one."""
        if self.overrides is not None and (self.overrides / name).is_file():
            return self.overrides / name
        path = PROMPTS_DIR / name
        if not path.is_file():
            raise ConfigError(f"no prompt file {name!r} in {self._where()}")
        return path

    def template(self, name: str) -> jinja2.Template:
        try:
            return self._env.get_template(name)
        except jinja2.TemplateNotFound:
            raise ConfigError(f"no prompt template {name!r} in {self._where()}") from None

    def render(self, name: str, **values: Any) -> str:
        return self.template(name).render(**values)

    def text(self, name: str) -> str:
        path = self.path(name)
        key = (path, path.stat().st_mtime_ns)  # an edited file is read again
        if key not in self._texts:
            self._texts[key] = path.read_text()
        return self._texts[key]

    def lines(self, name: str) -> tuple[str, ...]:
        """A file's non-empty lines (stop sequences, word lists)."""
        return tuple(line for line in self.text(name).splitlines() if line.strip())

    def paragraphs(self, name: str) -> tuple[str, ...]:
        """A file's blank-line-separated paragraphs (alternative system prompts)."""
        return tuple(p.strip() for p in self.text(name).split("\n\n") if p.strip())

    def names(self) -> list[tuple[str, Path]]:
        """Every prompt file by relative name, with the file it resolves to; an override
        that shadows nothing is listed too (a new template a config can name)."""
        found = {name: PROMPTS_DIR / name for name in _relative_files(PROMPTS_DIR)}
        if self.overrides is not None:
            found |= {name: self.overrides / name for name in _relative_files(self.overrides)}
        return sorted(found.items())

    def overrides_hash(self, folders: tuple[str, ...]) -> str | None:
        """A hash of the override files under ``folders`` (relative name and bytes);
        None when there are none, so a run without overrides hashes as before."""
        if self.overrides is None:
            return None
        digest = hashlib.sha256()
        found = False
        for name in _relative_files(self.overrides):
            if name.split("/", 1)[0] in folders:
                found = True
                digest.update(f"{name}\0".encode())
                digest.update(hashlib.sha256((self.overrides / name).read_bytes()).digest())
        return f"sha256:{digest.hexdigest()}" if found else None


def _relative_files(folder: Path) -> list[str]:
    relative = (path.relative_to(folder) for path in folder.rglob("*") if path.is_file())
    return sorted(p.as_posix() for p in relative if not set(p.parts) & set(_NOT_PROMPTS))


@cache
def _prompts(overrides: Path | None) -> Prompts:
    return Prompts(overrides)


PACKAGED = _prompts(None)


def prompts_for(config: object) -> Prompts:
    """The prompts a config's stages read: the packaged ones, shadowed by ``prompts_dir``."""
    folder = getattr(config, "prompts_dir", None)
    return _prompts(Path(folder) if folder else None)
