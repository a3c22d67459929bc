"""Which model an OpenAI-compatible server serves, for the cache key.

A local server's ``model`` is often a mere label (llama.cpp's server answers
any name with the one model it holds), so the key holds what the server itself
reports at ``/v1/models``. A managed server that is not running yet is known by
its launch recipe instead, so a fully cached rerun starts no server.
"""

from __future__ import annotations

import http.client
import os
import urllib.request
from collections.abc import Mapping
from typing import Any

import orjson

from distillpipe.models import file_fingerprint
from distillpipe.teachers.server import LaunchOptions, render_command

LISTING_TIMEOUT = 2.0
# Like the aiohttp client the calls go through: straight to the server, no proxy.
_direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def models_listing(base_url: str, headers: Mapping[str, str]) -> list[dict[str, Any]] | None:
    """The entries of ``GET {base_url}/models``, or None when nothing answers with a list."""
    request = urllib.request.Request(f"{base_url.rstrip('/')}/models", headers=dict(headers))
    try:
        with _direct.open(request, timeout=LISTING_TIMEOUT) as response:
            body = orjson.loads(response.read())
    except (OSError, ValueError, http.client.HTTPException):  # refused, 404, timeout, not JSON
        return None
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        return None
    return [entry for entry in data if isinstance(entry, dict)]


def served_model(
    listing: list[dict[str, Any]], model: str, *, local: bool
) -> dict[str, Any] | None:
    """What answers ``model`` in a listing: the entry with that id, else a one-model
    server's only entry. Its ``id`` and ``root`` (vLLM's weights), a file on this
    machine as its fingerprint; None when the listing tells no more than the name."""
    entry = next((e for e in listing if e.get("id") == model), None)
    if entry is None and len(listing) == 1:
        entry = listing[0]
    if entry is None:
        return None
    served = {key: entry[key] for key in ("id", "root") if isinstance(entry.get(key), str)}
    if set(served.values()) <= {model}:
        return None
    return {key: file_or_text(value) if local else value for key, value in served.items()}


def launch_recipe(launch: LaunchOptions, model: str) -> list[Any]:
    """The command a managed server starts with: host, port and interpreter stay
    placeholders (they change no answer), and a file it names (``PATH`` or
    ``--flag=PATH``) is its fingerprint, so a renamed copy makes the same recipe.
    ``launch.env`` is left out: it may hold secrets."""
    argv = render_command(
        launch.command, model=model, host="{host}", port="{port}", python="{python}"
    )
    return [file_or_text(part) for part in argv]


def file_or_text(text: str) -> Any:
    flag, sep, value = text.partition("=") if text.startswith("-") else ("", "", text)
    if not os.path.isfile(value):  # unlike Path.is_file, False for a name too long
        return text
    fingerprint = {"file": file_fingerprint(value)}
    return [flag, fingerprint] if sep else fingerprint
