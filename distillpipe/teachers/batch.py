"""``teacher.mode: batch``: the OpenAI Batch API and Anthropic Message Batches.

For the calls the cache could not answer: write the request file, submit it,
note the batch id in the journal (``<run dir>/batches/journal.jsonl``), poll
until it ends, fetch the results and map them back to calls by custom id
(the call's cache key), so the dispatcher caches each one.

An interrupted run resumes from the journal: a call that an earlier batch
already carries is polled for, never resubmitted. Items that failed or expired
are submitted again in a new batch, at most ``max_retries`` times. The SDKs
earn their place here (multipart uploads, file downloads, JSONL result
streams); their errors are mapped to the project's at this boundary.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from distillpipe.errors import (
    BudgetExceededError,
    FatalTeacherError,
    RetryableTeacherError,
    TeacherError,
)
from distillpipe.teachers.api import CONTENT_FILTER, ApiTeacher
from distillpipe.teachers.base import Call, Completion

JOURNAL = "journal.jsonl"
Results = dict[str, Completion | str]  # custom id -> completion, or why the item failed


def custom_id(call: Call) -> str:
    """The call's cache key without its ``v2:sha256:`` prefix (64 characters, [0-9a-f])."""
    return call.key.rpartition(":")[2]


class BatchJournal:
    """Append-only record of submitted batches: which custom ids each one carries."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / JOURNAL

    def entries(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        rows = []
        for line in self.path.read_bytes().splitlines():
            try:
                rows.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                continue  # a line torn by a kill mid-write: that batch was never noted
        return rows

    def add(self, entry: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("ab") as stream:
            stream.write(orjson.dumps(entry) + b"\n")
            stream.flush()
            os.fsync(stream.fileno())


class OpenAIBatches:
    def __init__(self, teacher: ApiTeacher) -> None:
        from openai import AsyncOpenAI

        self.teacher = teacher
        self.client = AsyncOpenAI(
            api_key=teacher.api_key or "unused",
            base_url=teacher.options.base_url,
            max_retries=teacher.options.max_retries,
            timeout=teacher.options.timeout,
        )

    async def submit(self, calls: Sequence[Call]) -> str:
        lines = [
            orjson.dumps(
                {
                    "custom_id": custom_id(call),
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": self.teacher.body(call),
                }
            )
            for call in calls
        ]
        upload = await self.client.files.create(
            file=("distillpipe-batch.jsonl", b"\n".join(lines) + b"\n"), purpose="batch"
        )
        batch = await self.client.batches.create(
            input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        return batch.id

    async def poll(self, batch_id: str) -> tuple[bool, str]:
        batch = await self.client.batches.retrieve(batch_id)
        if batch.status == "failed":
            errors = batch.errors.data if batch.errors and batch.errors.data else []
            detail = "; ".join(f"{e.code}: {e.message}" for e in errors) or "no reason given"
            raise FatalTeacherError(f"batch {batch_id} failed validation: {detail}")
        counts = batch.request_counts
        done = f"{counts.completed + counts.failed}/{counts.total}" if counts else "?"
        return batch.status in ("completed", "expired", "cancelled"), f"{batch.status} {done}"

    async def results(self, batch_id: str) -> Results:
        batch = await self.client.batches.retrieve(batch_id)
        found: Results = {}
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            content = await self.client.files.content(file_id)
            for line in content.content.splitlines():
                if line.strip():
                    row = orjson.loads(line)
                    found[row["custom_id"]] = self._item(row)
        return found

    def _item(self, row: dict[str, Any]) -> Completion | str:
        response, error = row.get("response"), row.get("error")
        if response and response.get("status_code") == 200:
            try:
                return self.teacher.parse(response["body"])
            except (KeyError, IndexError, TypeError):
                return f"malformed result: {str(response)[:120]}"
        body = (response or {}).get("body") or {}
        if self.teacher.is_content_filter(400, body):
            return Completion(text="", model=self.teacher.model, finish_reason=CONTENT_FILTER)
        error = error or body.get("error") or {}
        return f"{error.get('code')}: {error.get('message')}"


class AnthropicBatches:
    def __init__(self, teacher: ApiTeacher) -> None:
        from anthropic import AsyncAnthropic

        self.teacher = teacher
        self.client = AsyncAnthropic(
            api_key=teacher.api_key or "unused",
            base_url=teacher.options.base_url,
            max_retries=teacher.options.max_retries,
            timeout=teacher.options.timeout,
        )

    async def submit(self, calls: Sequence[Call]) -> str:
        batch = await self.client.messages.batches.create(
            requests=[
                {"custom_id": custom_id(call), "params": self.teacher.body(call)} for call in calls
            ]
        )
        return batch.id

    async def poll(self, batch_id: str) -> tuple[bool, str]:
        batch = await self.client.messages.batches.retrieve(batch_id)
        counts = batch.request_counts
        total = sum(counts.model_dump().values())
        return batch.processing_status == "ended", (
            f"{batch.processing_status} {total - counts.processing}/{total}"
        )

    async def results(self, batch_id: str) -> Results:
        found: Results = {}
        async for row in await self.client.messages.batches.results(batch_id):
            result = row.result
            if result.type == "succeeded":
                found[row.custom_id] = self.teacher.parse(result.message.model_dump())
            elif result.type == "errored":
                found[row.custom_id] = f"errored: {result.error.error.message}"
            else:
                found[row.custom_id] = result.type
        return found


async def run_batches(teacher: ApiTeacher, calls: Sequence[Call]) -> AsyncIterator[Any]:
    """Yield ``(call, completion)`` for every call, through provider batches."""
    provider = _provider(teacher)
    journal = BatchJournal(Path(teacher.state_dir or ".distillpipe-batches"))
    by_id = {custom_id(call): call for call in calls}
    budget_stop: BudgetExceededError | None = None
    reserved: dict[str, float] = {}
    try:
        active = _already_submitted(journal, by_id)
        for _ in range(teacher.options.max_retries + 1):
            covered = {cid for ids in active.values() for cid in ids}
            fresh = [call for cid, call in by_id.items() if cid not in covered]
            if fresh:
                fresh, refusal = _reserve(teacher, fresh, reserved)
                budget_stop = budget_stop or refusal
            if fresh:
                batch_id = await _map_errors(provider.submit(fresh), "submitting a batch")
                ids = [custom_id(call) for call in fresh]
                journal.add({"batch_id": batch_id, "backend": teacher.name, "custom_ids": ids})
                _report(teacher, f"submitted batch {batch_id}: {len(ids):,} requests")
                active[batch_id] = set(ids)
            failures: dict[str, str] = {}
            for batch_id, ids in list(active.items()):
                results = await _wait_and_fetch(teacher, provider, batch_id)
                for cid in ids:
                    outcome = results.get(cid, "missing from the batch results")
                    call = by_id.get(cid)
                    if call is None:
                        continue
                    if isinstance(outcome, Completion):
                        del by_id[cid]
                        if teacher.budget is not None:
                            teacher.budget.settle(reserved.pop(cid, 0.0), outcome)
                        yield call, outcome
                    else:
                        failures[cid] = outcome
                del active[batch_id]
            if not by_id or (budget_stop is not None and not failures):
                break
            if failures:
                _report(teacher, f"{len(failures):,} batch items failed; resubmitting them")
        if by_id and budget_stop is None:
            cid, reason = next(iter(failures.items()))
            raise TeacherError(
                f"{len(by_id)} batch items still failing after {teacher.options.max_retries} "
                f"resubmissions ({reason})",
                request_id=by_id[cid].request.id,
            )
        if budget_stop is not None:
            raise budget_stop
    finally:
        if teacher.budget is not None:
            for amount in reserved.values():
                teacher.budget.settle(amount, None)
        await provider.client.close()


def _provider(teacher: ApiTeacher) -> OpenAIBatches | AnthropicBatches:
    return AnthropicBatches(teacher) if teacher.name == "anthropic" else OpenAIBatches(teacher)


def _already_submitted(journal: BatchJournal, by_id: dict[str, Call]) -> dict[str, set[str]]:
    """For each pending call, the latest batch that carries it."""
    latest: dict[str, str] = {}
    for entry in journal.entries():
        for cid in entry["custom_ids"]:
            if cid in by_id:
                latest[cid] = entry["batch_id"]
    active: dict[str, set[str]] = {}
    for cid, batch_id in latest.items():
        active.setdefault(batch_id, set()).add(cid)
    return active


def _reserve(
    teacher: ApiTeacher, calls: list[Call], reserved: dict[str, float]
) -> tuple[list[Call], BudgetExceededError | None]:
    """The calls the budget allows (reserving each once); the refusal, if any."""
    if teacher.budget is None:
        return calls, None
    allowed, refusal = [], None
    for call in calls:
        cid = custom_id(call)
        if cid not in reserved:
            try:
                reserved[cid] = teacher.budget.reserve(call)
            except BudgetExceededError as exc:
                refusal = refusal or exc
                continue
        allowed.append(call)
    return allowed, refusal


async def _wait_and_fetch(
    teacher: ApiTeacher, provider: OpenAIBatches | AnthropicBatches, batch_id: str
) -> Results:
    last = ""
    while True:
        done, status = await _map_errors(provider.poll(batch_id), f"polling batch {batch_id}")
        if status != last:
            _report(teacher, f"batch {batch_id}: {status}")
            last = status
        if done:
            return await _map_errors(provider.results(batch_id), f"fetching batch {batch_id}")
        await asyncio.sleep(teacher.options.poll_interval)


async def _map_errors(awaitable: Any, doing: str) -> Any:
    """SDK exceptions become the project's: fatal for 4xx, retryable otherwise."""
    import anthropic
    import openai

    try:
        return await awaitable
    except (openai.APIStatusError, anthropic.APIStatusError) as exc:
        status = exc.status_code
        kind = RetryableTeacherError if status in (408, 409, 429) or status >= 500 else None
        hint = "; check the API key" if status in (401, 403) else ""
        error = (kind or FatalTeacherError)(f"{doing}: HTTP {status}: {exc.message}{hint}")
        raise error from exc
    except (openai.APIConnectionError, anthropic.APIConnectionError) as exc:
        raise RetryableTeacherError(f"{doing}: {exc}") from exc


def _report(teacher: ApiTeacher, text: str) -> None:
    report = getattr(teacher, "report", None)
    if report is not None:
        report(text)
