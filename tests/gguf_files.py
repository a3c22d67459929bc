"""GGUF files built by the tests: the embedded gemma with metadata it lacks (a chat template).

A GGUF is a header (metadata entries, then the tensor table) and the tensor data
at the next multiple of ``general.alignment``; tensor offsets count from the data's
start, so an entry is added by rewriting the header and its padding alone.
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path

from distillpipe.models import gguf_metadata, gguf_sections

# Gemma 3's chat template as its instruction-tuned tokenizers carry it: the system
# message folds into the first user turn, roles alternate, contents are trimmed.
GEMMA3_CHAT_TEMPLATE = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else "") }}
    {{- message['content'] | trim }}
    {{- '<end_of_turn>\\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\\n'}}
{%- endif -%}
"""

_STRING = 8


def with_string_metadata(source: Path, target: Path, key: str, value: str) -> Path:
    """A copy of the GGUF ``source`` at ``target`` with one more string entry."""
    alignment = gguf_metadata(source, ["general.alignment"]).get("general.alignment", 32)
    with source.open("rb") as stream, mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        sections = gguf_sections(mm)
        assert sections is not None, f"{source} is not a GGUF file"
        metadata_end, table_end = sections
        entries = struct.unpack_from("<Q", mm, 16)[0]
        entry = (
            struct.pack("<Q", len(key.encode())) + key.encode() + struct.pack("<I", _STRING)
            + struct.pack("<Q", len(value.encode())) + value.encode()
        )  # fmt: skip
        header = (
            mm[:16] + struct.pack("<Q", entries + 1) + mm[24:metadata_end] + entry
            + mm[metadata_end:table_end]
        )  # fmt: skip
        data_start = table_end + (-table_end % alignment)
        with target.open("wb") as out:
            out.write(header + b"\0" * (-len(header) % alignment))
            out.write(mm[data_start:])
    return target
