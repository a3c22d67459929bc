"""Token counts for API models with OpenAI's BPE encodings.

tiktoken downloads its encoding files on first use; where that cannot happen
(no network) the same encodings come from bpe-openai, which bundles them.
"""

from __future__ import annotations

import functools
from typing import Any


@functools.cache
def encoding_named(name: str) -> Any:
    import tiktoken

    try:
        return tiktoken.get_encoding(name)
    except Exception:  # tiktoken could not fetch the file
        import bpe_openai

        return bpe_openai.get_encoding(name)


def encoding_for_model(model: str) -> Any:
    """The model's encoding; o200k_base (today's OpenAI models) when tiktoken does not know it."""
    from tiktoken.model import encoding_name_for_model

    try:
        return encoding_named(encoding_name_for_model(model))
    except KeyError:
        return encoding_named("o200k_base")


def count_tokens(encoding: Any, text: str) -> int:
    return len(encoding.encode(text, disallowed_special=()))
