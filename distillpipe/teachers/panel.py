"""The panel of teachers a run asks: its members (``teachers/members.py``), which of
them answer a record, and how each is named in requests.

Routing is deterministic: a member with a ``share`` answers a record when a hash
of (config seed, member name, record id) falls below its share, so a rerun, a
resumed run and another executor route every record alike. Members without a
share answer every record; a record no member would answer goes to the first
that answers any (``share: 0``: none, a member only other stages ask).

A plain ``teacher:`` is a panel of one that names no member in its requests
(``Request.teacher`` None), so its cache keys are those of a run without panels.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from distillpipe.errors import ConfigError
from distillpipe.teachers.members import PanelMember, single_member


def share_draw(seed: int, member: str, record_id: str) -> float:
    """A number in [0, 1) drawn from the seed, the member and the record id."""
    digest = hashlib.sha256(f"{seed}:{member}:{record_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class Panel:
    def __init__(self, members: Sequence[PanelMember], seed: int = 0, named: bool = True) -> None:
        if not members:
            raise ValueError("a panel needs at least one member")
        self.members = list(members)
        self.seed = seed
        self.named = named

    @classmethod
    def from_config(cls, config: object) -> Panel:
        """``teachers:`` as a panel; a plain ``teacher:`` as a panel of one."""
        teachers = getattr(config, "teachers", None)
        seed = int(getattr(config, "seed", 0))
        if teachers:
            return cls(teachers, seed, named=True)
        return cls([single_member(config.teacher)], seed, named=False)  # type: ignore[attr-defined]

    @property
    def names(self) -> list[str]:
        return [member.name for member in self.members]

    @property
    def several(self) -> bool:
        return len(self.members) > 1

    def member(self, name: str | None = None) -> PanelMember:
        """The member named ``name``; the first when None."""
        if name is None:
            return self.members[0]
        for member in self.members:
            if member.name == name:
                return member
        raise ConfigError(f"no teacher named {name!r} (named: {', '.join(self.names)})")

    def request_name(self, member: PanelMember) -> str | None:
        """What ``Request.teacher`` carries for ``member``: None in a panel of one
        from a plain ``teacher:``."""
        return member.name if self.named else None

    def route(self, record_id: str) -> list[PanelMember]:
        """The members that answer the record, in panel order."""
        chosen = [
            member
            for member in self.answering
            if member.share is None or share_draw(self.seed, member.name, record_id) < member.share
        ]
        return chosen or self.answering[:1]

    @property
    def answering(self) -> list[PanelMember]:
        """The members generate asks (all but those with ``share: 0``)."""
        return [member for member in self.members if member.answers]

    def weights(self) -> dict[str, float]:
        return {member.name: member.weight for member in self.members}
