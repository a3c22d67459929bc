"""``teacher.mode: batch``: the OpenAI Batch API and Anthropic Message Batches.

For the calls the cache could not answer: note the intent in the journal
(``<run dir>/batches/journal.jsonl``, see batch_journal.py), write the request
file, submit it, note the batch id, poll until it ends, fetch the results and
map them back to calls by custom id (the call's cache key), so the dispatcher
caches each one.

An interrupted run resumes from the journal: a call that an earlier batch
already carries is polled for, never resubmitted. An intent whose batch id
was never noted (killed while the provider answered, or the answer was lost)
is looked for in the provider's list of batches first and submitted again only
if it is not there. Items that failed or expired are submitted again in a new
batch, at most ``max_retries`` times. The SDKs earn their place here
(multipart uploads, file downloads, JSONL result streams); their errors are
mapped to the project's at this boundary.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import orjson

from distillpipe.errors import (
    BudgetExceededError,
    FatalTeacherError,
    RetryableTeacherError,
    TeacherError,
)
from distillpipe.teachers.base import CONTENT_FILTER, Budget, Call, Completion, TeacherContext
from distillpipe.teachers.batch_journal import BatchJournal, Submission, plan_resume

TAG_KEY, CALLS_KEY = "distillpipe_tag", "distillpipe_calls"  # an OpenAI batch's metadata
CLOCK_SKEW = 300.0  # seconds a provider's clock may run behind ours
Results = dict[str, Completion | str]  # custom id -> completion, or why the item failed


class BatchOptions(Protocol):
    """The teacher options batch mode reads (``api.ApiOptions`` holds them)."""

    base_url: str
    timeout: float
    max_retries: int
    retry_backoff: float
    poll_interval: float


class BatchTeacher(Protocol):
    """What batch mode needs of the teacher that hands itself in: ``api.ApiTeacher``,
    whose ``generate`` calls :func:`run_batches` (so this module never imports it)."""

    api_key: str | None
    budget: Budget | None
    context: TeacherContext

    @property
    def name(self) -> str: ...

    @property
    def model(self) -> str: ...

    @property
    def options(self) -> BatchOptions: ...

    def body(self, call: Call) -> dict[str, Any]: ...

    def parse(self, data: Any, top_k: int | None = None) -> Completion: ...

    def is_content_filter(self, status: int, data: Any) -> bool: ...


def custom_id(call: Call) -> str:
    """The call's cache key without its ``v2:sha256:`` prefix (64 characters, [0-9a-f])."""
    return call.key.rpartition(":")[2]


class OpenAIBatches:
    def __init__(self, teacher: BatchTeacher) -> None:
        from openai import AsyncOpenAI

        self.teacher = teacher
        self.client = AsyncOpenAI(
            api_key=teacher.api_key or "unused",
            base_url=teacher.options.base_url,
            max_retries=teacher.options.max_retries,
            timeout=teacher.options.timeout,
        )

    async def submit(self, calls: Sequence[Call], intent: Submission) -> str:
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
        once = self.client.with_options(max_retries=0)  # a blind retry could pay twice
        batch = await once.batches.create(
            input_file_id=upload.id,
            endpoint="/v1/chat/completions",
            completion_window="24h",
            metadata={TAG_KEY: intent.tag, CALLS_KEY: intent.signature},
        )
        return batch.id

    async def find(self, intent: Submission, known: set[str]) -> list[str]:
        """The batch carrying the intent's tag in its metadata (the list is newest first)."""
        found = []
        async for batch in self.client.batches.list(limit=100):
            if batch.created_at < intent.created_at - CLOCK_SKEW:
                break
            if (batch.metadata or {}).get(TAG_KEY) == intent.tag:
                found.append(batch.id)
        return found

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
    def __init__(self, teacher: BatchTeacher) -> None:
        from anthropic import AsyncAnthropic

        self.teacher = teacher
        self.client = AsyncAnthropic(
            api_key=teacher.api_key or "unused",
            base_url=teacher.options.base_url,
            max_retries=teacher.options.max_retries,
            timeout=teacher.options.timeout,
        )

    async def submit(self, calls: Sequence[Call], intent: Submission) -> str:
        once = self.client.with_options(max_retries=0)  # a blind retry could pay twice
        batch = await once.messages.batches.create(
            requests=[
                {"custom_id": custom_id(call), "params": self.teacher.body(call)} for call in calls
            ]
        )
        return batch.id

    async def find(self, intent: Submission, known: set[str]) -> list[str]:
        """The batches that may be the intent's.

        Message Batches carry no metadata, and a batch shows its custom ids only
        once it has ended. So a candidate is a batch the journal does not know,
        of the intent's size, created since the intent (less CLOCK_SKEW; the
        list is newest first). An ended candidate is checked by the custom id
        of its first result, and if it is the intent's, it alone is the answer.
        Otherwise every candidate still in progress is adopted: our batch may
        be among them, and a stranger's costs a wait, never a payment, since
        results map back by custom id and ours are not in it.
        """
        wanted = set(intent.custom_ids)
        in_progress = []
        async for batch in self.client.messages.batches.list(limit=100):
            if batch.created_at.timestamp() < intent.created_at - CLOCK_SKEW:
                break
            size = sum(batch.request_counts.model_dump().values())
            if batch.id in known or size != len(wanted) or batch.archived_at is not None:
                continue
            if batch.processing_status != "ended":
                in_progress.append(batch.id)
            elif await self._first_custom_id(batch.id) in wanted:
                return [batch.id]
        return in_progress

    async def _first_custom_id(self, batch_id: str) -> str | None:
        rows = await self.client.messages.batches.results(batch_id)
        try:
            async for row in rows:
                return row.custom_id
            return None
        finally:
            await rows.close()  # the rest of the stream is not read

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


async def run_batches(teacher: BatchTeacher, calls: Sequence[Call]) -> AsyncIterator[Any]:
    """Yield ``(call, completion)`` for every call, through provider batches."""
    provider = _provider(teacher)
    journal = BatchJournal(Path(teacher.context.state_dir or ".distillpipe-batches"))
    by_id = {custom_id(call): call for call in calls}
    budget_stop: BudgetExceededError | None = None
    reserved: dict[str, float] = {}
    try:
        active = await _resume(teacher, provider, journal, set(by_id))
        for _ in range(teacher.options.max_retries + 1):
            covered = {cid for ids in active.values() for cid in ids}
            fresh = [call for cid, call in by_id.items() if cid not in covered]
            if fresh:
                fresh, refusal = _reserve(teacher, fresh, reserved)
                budget_stop = budget_stop or refusal
            if fresh:
                ids = {custom_id(call) for call in fresh}
                for batch_id in await _submit(teacher, provider, journal, fresh):
                    active.setdefault(batch_id, set()).update(ids)
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
            # an adopted stranger's batch lacks our items; the batch that had them delivered
            failures = {cid: why for cid, why in failures.items() if cid in by_id}
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


Provider = OpenAIBatches | AnthropicBatches


def _provider(teacher: BatchTeacher) -> Provider:
    return AnthropicBatches(teacher) if teacher.name == "anthropic" else OpenAIBatches(teacher)


async def _resume(
    teacher: BatchTeacher, provider: Provider, journal: BatchJournal, pending: set[str]
) -> dict[str, set[str]]:
    """The journal's batches that carry pending calls, batch id -> custom ids; an intent
    the provider never confirmed is looked for on the provider first."""
    plan = plan_resume(journal.submissions(), pending)
    for intent, ids in plan.unresolved:
        for batch_id in await _find(teacher, provider, journal, intent, plan.known_batches):
            plan.active.setdefault(batch_id, set()).update(ids)
    return plan.active


async def _submit(
    teacher: BatchTeacher, provider: Provider, journal: BatchJournal, calls: list[Call]
) -> list[str]:
    """Submit ``calls`` as one batch, paid for once: each create request is one intent,
    noted first; when its answer is lost (a timeout, a 5xx, a dropped connection) the
    provider may still have the batch, so it is looked for before the next attempt."""
    ids = [custom_id(call) for call in calls]
    retries = teacher.options.max_retries
    for attempt in range(retries + 1):
        intent = journal.intend(teacher.name, ids)
        try:
            batch_id = await _map_errors(provider.submit(calls, intent), "submitting a batch")
        except RetryableTeacherError:
            if attempt == retries:
                raise  # the intent stays open; the next run looks for its batch
            await asyncio.sleep(teacher.options.retry_backoff * 2**attempt)
            known = {b for seen in journal.submissions() for b in seen.batch_ids}
            if found := await _find(teacher, provider, journal, intent, known):
                return found
            continue
        journal.note_batch(intent, batch_id)
        _report(teacher, f"submitted batch {batch_id}: {len(ids):,} requests")
        return [batch_id]
    raise AssertionError("unreachable")


async def _find(
    teacher: BatchTeacher,
    provider: Provider,
    journal: BatchJournal,
    intent: Submission,
    known: set[str],
) -> list[str]:
    """Adopt the provider's batches for an intent without a batch id, or abandon it."""
    doing = f"looking for the batch of intent {intent.tag} among the provider's batches"
    found = await _map_errors(provider.find(intent, known), doing)
    for batch_id in found:
        journal.note_batch(intent, batch_id, adopted=True)
    if found:
        _report(teacher, f"found batch {', '.join(found)} submitted before the journal noted it")
    else:
        journal.abandon(intent)
    return found


def _reserve(
    teacher: BatchTeacher, calls: list[Call], reserved: dict[str, float]
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


async def _wait_and_fetch(teacher: BatchTeacher, provider: Provider, batch_id: str) -> Results:
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


def _report(teacher: BatchTeacher, text: str) -> None:
    teacher.context.report(text)
