"""The truncation ladder (``generate.max_tokens: [4096, 16384, 32768]``): a sample cut
off at its token limit (``finish_reason: length``, a reasoning teacher still thinking
or not yet at its answer) is asked again at the next rung, until it finishes or the
top rung cuts it off too.

Every attempt is a call of its own through the dispatcher: cached under its own key
(``max_tokens`` is in it), counted, priced and held against the budget, so a rerun
asks nothing and a killed run resumes at the rung it reached. The sample keeps the
last attempt; ``Completion.ladder`` lists the limits tried. A sample still cut off
at the top is the stage's to reject (``cut_off``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from distillpipe.dispatch import Dispatcher
from distillpipe.teachers.base import Completion, Request

TRUNCATED = "length"


def cut_off(completion: Completion) -> bool:
    return completion.finish_reason == TRUNCATED


@dataclass
class LadderStats:
    rungs: tuple[int, ...]
    by_attempts: dict[int, int] = field(default_factory=dict)  # samples by attempts made
    cut_off_at_top: int = 0

    def add(self, completion: Completion) -> None:
        attempts = len(completion.ladder)
        self.by_attempts[attempts] = self.by_attempts.get(attempts, 0) + 1
        self.cut_off_at_top += cut_off(completion)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rungs": list(self.rungs),
            "samples_by_attempts": {str(k): v for k, v in sorted(self.by_attempts.items())},
            "cut_off_at_top": self.cut_off_at_top,
        }


class TruncationLadder:
    """``resolve`` as the dispatcher's, climbing the ladder for every sample cut off."""

    def __init__(self, dispatcher: Dispatcher, rungs: Sequence[int]) -> None:
        self.dispatcher = dispatcher
        self.rungs = tuple(rungs)
        self.stats = LadderStats(self.rungs)

    async def resolve(self, requests: Sequence[Request]) -> list[list[Completion]]:
        found = await self.dispatcher.resolve(requests)
        results = [
            [replace(c, ladder=(request.params.max_tokens,)) for c in group]
            for request, group in zip(requests, found, strict=True)
        ]
        while retries := self._retries(requests, results):
            asks = [ask for _, _, ask in retries]
            answers = await self.dispatcher.resolve(asks)
            for (i, j, ask), (answer,) in zip(retries, answers, strict=True):
                tried = (*results[i][j].ladder, ask.params.max_tokens)
                results[i][j] = replace(answer, ladder=tried)
        for group in results:
            for completion in group:
                self.stats.add(completion)
        return results

    def _retries(
        self, requests: Sequence[Request], results: list[list[Completion]]
    ) -> list[tuple[int, int, Request]]:
        """(request, sample offset, the request one rung up) for each sample cut off
        below the top."""
        retries = []
        for i, (request, group) in enumerate(zip(requests, results, strict=True)):
            for j, completion in enumerate(group):
                higher = [r for r in self.rungs if r > completion.ladder[-1]]
                if cut_off(completion) and higher:
                    params = replace(request.params, max_tokens=higher[0])
                    sample = request.first_sample + j
                    ask = replace(request, params=params, n=1, first_sample=sample)
                    retries.append((i, j, ask))
        return retries


def cut_off_reason(response: dict[str, Any], attempts: Sequence[int]) -> str:
    """Why a sample cut off at the top rung is rejected, naming the attempts."""
    tried = ", ".join(str(limit) for limit in attempts)
    thinking = response.get("reasoning") and not response.get("text")
    where = "while thinking" if thinking else "before its end"
    return (
        f"sample {response.get('sample')} cut off {where} at every max_tokens of the "
        f"ladder ({len(attempts)} attempts: {tried})"
    )
