"""Reading a configured field out of a record: ``reference``, ``meta.answer``,
``instances[].output`` (every element's ``output``), ``reference.cases.0``."""

from __future__ import annotations

from typing import Any

_ABSENT = object()


def field_values(record: dict[str, Any], path: str) -> list[Any]:
    """Every value at ``path`` (``[]`` fans out over a list); empty when absent.
    None and empty strings count as absent."""
    values: list[Any] = [record]
    for part in path.split("."):
        fan_out = part.endswith("[]")
        name = part[:-2] if fan_out else part
        found: list[Any] = []
        for value in values:
            child = _child(value, name) if name else value
            if child is _ABSENT:
                continue
            if fan_out:
                found.extend(child if isinstance(child, list) else [child])
            else:
                found.append(child)
        values = found
    return [v for v in values if v is not None and not (isinstance(v, str) and not v.strip())]


def _child(value: Any, name: str) -> Any:
    if isinstance(value, dict):
        return value.get(name, _ABSENT)
    if isinstance(value, list) and name.isdigit() and int(name) < len(value):
        return value[int(name)]
    return _ABSENT
