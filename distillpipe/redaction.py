"""Which names and values are secrets, and the one function that hides them.

By name: a config key, header, environment variable or command-line flag is
secret when one of its words (split on ``_``, ``-``, ``.`` and camelCase) is
key, keys, apikey, token, secret, secrets, password, passwd, auth,
authorization, credential, credentials or cookie, or ends in apikey, token,
secret, password or passwd (``OPENAIAPIKEY``, ``hftoken``). Whole words only,
so ``max_tokens``, ``tokenizer``, ``top_k``, ``monkey`` and ``author`` are not
secrets; a name whose last word is ``env`` (``api_key_env``) names a variable
and is not one either.

By value: every string that came from a secret-named environment variable or
stood at a secret-named key is a known secret, replaced by ``***`` wherever
else it appears. Values shorter than MIN_SCRUBBED_LENGTH (a ``"1"`` flag) are
hidden by name only: replacing them everywhere would mangle unrelated text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

REDACTED = "***"
SECRET_WORDS = frozenset(
    {
        "key", "keys", "apikey", "token", "secret", "secrets", "password", "passwd",
        "auth", "authorization", "credential", "credentials", "cookie",
    }
)  # fmt: skip
SECRET_SUFFIXES = ("apikey", "token", "secret", "password", "passwd")
MIN_SCRUBBED_LENGTH = 6
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")


def name_words(name: str) -> list[str]:
    """``X-Api-Key`` → x, api, key; ``OPENAI_API_KEY`` → openai, api, key; ``hfToken`` → hf,
    token."""
    return [word.lower() for word in _WORD.findall(name)]


def is_secret_name(name: str) -> bool:
    words = name_words(name)
    if not words or words[-1] == "env":
        return False
    return any(word in SECRET_WORDS or word.endswith(SECRET_SUFFIXES) for word in words)


def is_secret_flag(part: str) -> bool:
    """``--api-key`` (its value is the next argument) or ``--hf-token=…``."""
    flag = part.partition("=")[0]
    return part.startswith("-") and is_secret_name(flag)


def secret_values(value: Any, key: str = "") -> set[str]:
    """The literal secrets in a tree: every string under a secret-named key, and the
    values of secret flags in lists of arguments (``[--api-key, X]``, ``--token=X``)."""
    if is_secret_name(key):
        return set(_strings(value))
    found: set[str] = set()
    if isinstance(value, dict):
        for child_key, child in value.items():
            found |= secret_values(child, str(child_key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, str) and _flag_value_at(value, index):
                found.add(item.partition("=")[2] if _is_flag_with_value(item) else item)
            else:
                found |= secret_values(item)
    return {secret for secret in found if secret}


def redact(value: Any, secrets: Iterable[str] = (), key: str = "") -> Any:
    """``value`` (JSON-like data) with every secret replaced by ***: whatever stands at
    a secret-named key, the values of secret flags, and every known secret value."""
    return _redact(value, scrubber(secrets), key)


def scrubber(secrets: Iterable[str]) -> Callable[[str], str]:
    """A function replacing every known secret value in a string by ***."""
    pattern = _secrets_pattern(secrets)
    if pattern is None:
        return lambda text: text
    return lambda text: pattern.sub(REDACTED, text)


def byte_scrubber(secrets: Iterable[str]) -> Callable[[bytes], bytes]:
    """As :func:`scrubber`, for bytes (a server's output on its way to the log)."""
    pattern = _secrets_pattern(secrets)
    if pattern is None:
        return lambda data: data
    as_bytes = re.compile(pattern.pattern.encode())
    return lambda data: as_bytes.sub(REDACTED.encode(), data)


def _secrets_pattern(secrets: Iterable[str]) -> re.Pattern[str] | None:
    """One alternation of the secrets long enough to scrub, longest first."""
    scrubbed = sorted({s for s in secrets if len(s) >= MIN_SCRUBBED_LENGTH}, key=len, reverse=True)
    return re.compile("|".join(map(re.escape, scrubbed))) if scrubbed else None


def _redact(value: Any, known: Callable[[str], str], key: str) -> Any:
    if is_secret_name(key):
        return _hidden(value)
    if isinstance(value, dict):
        return {k: _redact(v, known, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted_item(value, index, known) for index in range(len(value))]
    return known(value) if isinstance(value, str) else value


def _redacted_item(items: list[Any], index: int, known: Callable[[str], str]) -> Any:
    item = items[index]
    if isinstance(item, str) and _flag_value_at(items, index):
        return f"{item.partition('=')[0]}={REDACTED}" if _is_flag_with_value(item) else REDACTED
    return _redact(item, known, "")


def _flag_value_at(items: list[Any], index: int) -> bool:
    """Whether ``items[index]`` is (or carries) the value of a secret flag."""
    item = items[index]
    if _is_flag_with_value(item):
        return is_secret_flag(item)
    previous = items[index - 1] if index else None
    return (
        isinstance(previous, str) and not _is_flag_with_value(previous) and is_secret_flag(previous)
    )


def _is_flag_with_value(part: str) -> bool:
    return part.startswith("-") and "=" in part


def _hidden(value: Any) -> Any:
    """Everything under a secret-named key: scalars become ***, containers keep their shape."""
    if isinstance(value, dict):
        return {k: _hidden(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_hidden(v) for v in value]
    if value is None or isinstance(value, bool) or value == "":
        return value
    return REDACTED


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, dict):
        for child in value.values():
            yield from _strings(child)
    elif isinstance(value, list):
        for child in value:
            yield from _strings(child)
    elif isinstance(value, str | int | float) and not isinstance(value, bool):
        yield str(value)
