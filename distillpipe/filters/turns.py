"""Filters over conversations: every assistant turn judged, or the whole conversation.

A record with ``messages`` is scored through its views (``conversations.turn_views``,
scope from the filter's ``turns`` option): the filter scores and decides each view
as it would a single-turn record, and the conversation is kept only when every
view is. Its ``scores.<name>`` is the list of the turns' scores (``each``) or the
whole conversation's score; a rejection names the first failing turn.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from distillpipe.conversations import is_conversation, turn_views
from distillpipe.filters.base import Filter, Verdict

Record = dict[str, Any]


@dataclass(slots=True)
class TurnScores:
    """The scores of a conversation's views, in view order."""

    views: list[Record]
    scores: list[Any]
    each: bool


async def score_with_turns(
    filter: Filter,
    batch: Sequence[Record],
    score_batch: Callable[[Filter, Sequence[Record]], Awaitable[list[Any]]],
) -> list[Any]:
    """``score_batch`` of the batch, a conversation's score being its views' TurnScores."""
    if not any(is_conversation(record) for record in batch):
        return await score_batch(filter, batch)
    scope = filter.options.turns
    expanded: list[Record] = []
    spans: list[tuple[int, int] | None] = []
    for record in batch:
        if is_conversation(record):
            views = turn_views(record, scope)
            spans.append((len(expanded), len(expanded) + len(views)))
            expanded.extend(views)
        else:
            spans.append(None)
            expanded.append(record)
    scored = await score_batch(filter, expanded) if expanded else []
    out: list[Any] = []
    position = 0
    for span in spans:
        if span is None:
            out.append(scored[position])
            position += 1
        else:
            start, end = span
            out.append(TurnScores(expanded[start:end], scored[start:end], scope == "each"))
            position = end
    return out


def score_values(filter: Filter, scores: Iterable[Any]) -> list[float | None]:
    """The numbers scores stand for (quantiles, percentile thresholds); a conversation's
    views count one value each."""
    values: list[float | None] = []
    for score in scores:
        if isinstance(score, TurnScores):
            values.extend(filter.value(s) for s in score.scores)
        else:
            values.append(filter.value(score))
    return values


def decide_with_turns(filter: Filter, record: Record, score: Any) -> Verdict:
    if not isinstance(score, TurnScores):
        return filter.decide(record, score)
    verdicts = [filter.decide(view, s) for view, s in zip(score.views, score.scores, strict=True)]
    if not verdicts:
        return Verdict.rejected("the conversation has no answered turn")
    written = [v.score for v in verdicts] if score.each else verdicts[0].score
    for turn, verdict in enumerate(verdicts):
        if not verdict.keep:
            where = f"turn {turn + 1}" if score.each else "the whole conversation"
            return Verdict.rejected(f"{where}: {verdict.reason}", written)
    return Verdict.kept(written)
