"""Model files: the fingerprint that tells one model file from another, cheaply."""

from __future__ import annotations

import os
import random
import shutil
import struct
from pathlib import Path

import pytest

from distillpipe.models import file_fingerprint, gguf_header_length


def gguf_string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def tiny_gguf(tokens: int = 200_000, data_bytes: int = 4 << 20) -> tuple[bytes, int]:
    """A GGUF v3 file (its bytes, and where its tensor table ends): a name, a
    vocabulary big enough to push the header past 1 MiB, and one F32 tensor."""
    entries = [
        gguf_string("general.name") + struct.pack("<I", 8) + gguf_string("tiny"),
        gguf_string("tokenizer.ggml.tokens")
        + struct.pack("<IIQ", 9, 8, tokens)
        + b"".join(gguf_string(f"tok{i:06d}") for i in range(tokens)),
    ]
    tensor = gguf_string("weight") + struct.pack("<IQIQ", 1, data_bytes // 4, 0, 0)
    header = b"GGUF" + struct.pack("<IQQ", 3, 1, len(entries)) + b"".join(entries) + tensor
    padding = b"\0" * (-len(header) % 32)
    return header + padding + random.Random(0).randbytes(data_bytes), len(header)


@pytest.fixture
def gguf(tmp_path: Path) -> tuple[Path, int]:
    data, header = tiny_gguf()
    path = tmp_path / "tiny.gguf"
    path.write_bytes(data)
    return path, header


def last_token_byte(header: int) -> int:
    """The offset of the vocabulary's last byte, just before the tensor table."""
    return header - len(gguf_string("weight")) - 24 - 1


def edited(source: Path, target: Path, offset: int) -> Path:
    data = bytearray(source.read_bytes())
    data[offset] ^= 0xFF
    target.write_bytes(data)
    return target


def test_the_gguf_header_is_read_to_the_end_of_its_tensor_table(gguf: tuple[Path, int]):
    path, header = gguf
    assert header > 1 << 20
    assert gguf_header_length(path.read_bytes()) == header
    assert gguf_header_length(b"not a gguf file") is None
    assert gguf_header_length(path.read_bytes()[: header // 2]) is None  # truncated


def test_a_renamed_copy_has_the_same_fingerprint_and_other_content_another(
    gguf: tuple[Path, int], tmp_path: Path
):
    path, header = gguf
    original = file_fingerprint(path)
    assert original.startswith("sha256:")
    (tmp_path / "elsewhere").mkdir()
    copy = shutil.copyfile(path, tmp_path / "elsewhere" / "renamed.gguf")
    assert file_fingerprint(copy) == original
    others = [
        edited(path, tmp_path / "metadata.gguf", last_token_byte(header)),
        edited(path, tmp_path / "tensor.gguf", path.stat().st_size - 1),
        edited(path, tmp_path / "first.gguf", header + 40),
    ]
    longer = tmp_path / "longer.gguf"
    longer.write_bytes(path.read_bytes() + b"\0")
    fingerprints = {file_fingerprint(other) for other in [*others, longer]}
    assert original not in fingerprints and len(fingerprints) == 4


def test_a_file_that_is_not_gguf_is_fingerprinted_too(tmp_path: Path):
    plain = tmp_path / "weights.bin"
    plain.write_bytes(random.Random(1).randbytes(3 << 20))
    other = edited(plain, tmp_path / "other.bin", 100)
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    assert len({file_fingerprint(p) for p in (plain, other, empty)}) == 3


def test_the_fingerprint_is_memoised_by_path_inode_size_and_mtime(gguf: tuple[Path, int]):
    path, header = gguf
    before = file_fingerprint(path)
    stat = path.stat()
    with path.open("r+b") as stream:  # same inode, same size, mtime put back: not read again
        stream.seek(last_token_byte(header))
        stream.write(b"X")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert file_fingerprint(path) == before
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert file_fingerprint(path) != before
