"""Label Studio interchange: the sample as import tasks, its annotations back as decisions.

``export_tasks`` writes a JSON list of tasks (``[{"data": {...}}]``, Label Studio's
import format) and, beside it, the labeling config the tasks are meant for
(``<name>.label-config.xml``: paste it into the project's Labeling Interface). The
controls there are the page's decisions: ``decision`` (accept, reject, edit,
pick, skip), ``reason`` (the reject tags), ``edit`` (the new response), ``pick``
(a sample number, from 1) and ``note``.

``import_annotations`` reads Label Studio's JSON export (tasks with
``annotations``), takes each task's latest annotation that was not cancelled and
appends it to ``review.jsonl`` as a decision (``source: labelstudio``); one
identical to the record's current decision is not appended again, so importing
the same export twice changes nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import orjson
from pydantic import ValidationError

from distillpipe.errors import InputError
from distillpipe.io import atomic_write_bytes
from distillpipe.review.decisions import (
    DECISIONS_FILE,
    REASONS,
    Decision,
    append_decisions,
    latest_decisions,
)

ACTIONS = ("accept", "reject", "edit", "pick", "skip")
SOURCE = "labelstudio"


def label_config() -> str:
    choices = "".join(f"<Choice value={quoteattr(a)}/>" for a in ACTIONS)
    reasons = "".join(f"<Choice value={quoteattr(r)}/>" for r in REASONS)
    return (
        "<View>\n"
        '  <Header value="Instruction"/><Text name="instruction" value="$instruction"/>\n'
        '  <Header value="Input"/><Text name="input" value="$input"/>\n'
        '  <Header value="System prompt"/><Text name="system" value="$system"/>\n'
        '  <Header value="Samples"/><Text name="samples" value="$samples"/>\n'
        '  <Header value="Chosen response"/><Text name="response" value="$response"/>\n'
        '  <Header value="Filters"/><Text name="filters" value="$filters"/>\n'
        '  <Header value="Lineage"/><Text name="lineage" value="$lineage"/>\n'
        f'  <Choices name="decision" toName="response" choice="single" required="true">'
        f"{choices}</Choices>\n"
        f'  <Choices name="reason" toName="response" choice="single">{reasons}</Choices>\n'
        '  <TextArea name="edit" toName="response" placeholder="the edited response"/>\n'
        '  <Number name="pick" toName="samples" min="1"/>\n'
        '  <TextArea name="note" toName="response" placeholder="a note"/>\n'
        "</View>\n"
    )


def task(item: dict[str, Any]) -> dict[str, Any]:
    """One sample item as a task: plain text fields (Label Studio's Text shows them as text)."""
    responses = item["responses"]
    chosen = item["chosen"]
    samples = "\n\n".join(
        f"[{r['sample'] + 1}]{' (chosen)' if r['sample'] == chosen else ''} {r['text']}"
        for r in responses
    )
    filters = "\n".join(
        f"{f['name']}: {f['verdict']}"
        + (f" ({orjson.dumps(f['score']).decode()})" if f["score"] is not None else "")
        + (f": {f['reason']}" if f["reason"] else "")
        for f in item["filters"]
    )
    origin = item["origin"]
    lineage = ", ".join(f"{k}: {v}" for k, v in origin.items())
    if item["parent"]:
        lineage += f"\nparent: {item['parent']}"
    return {
        "data": {
            "record_id": item["id"],
            "instruction": item["instruction"],
            "input": item["input"],
            "system": item["system"],
            "samples": samples,
            "response": responses[chosen]["text"] if responses else "",
            "chosen": chosen,
            "filters": filters,
            "lineage": lineage,
            "stratum": item["stratum"],
            "reviewed": item["reviewed"],
        }
    }


def export_tasks(sample: dict[str, Any], path: Path) -> tuple[Path, Path]:
    """Write the tasks and the labeling config; returns both paths."""
    tasks = [task(item) for item in sample["items"]]
    atomic_write_bytes(path, orjson.dumps(tasks, option=orjson.OPT_INDENT_2))
    config = path.with_name(f"{path.stem}.label-config.xml")
    atomic_write_bytes(config, label_config().encode())
    return path, config


def _latest_annotation(annotations: list[dict[str, Any]]) -> dict[str, Any] | None:
    done = [a for a in annotations if isinstance(a, dict) and not a.get("was_cancelled")]
    if not done:
        return None
    return max(enumerate(done), key=lambda p: (str(p[1].get("updated_at") or ""), p[0]))[1]


def _controls(result: list[dict[str, Any]]) -> dict[str, Any]:
    """from_name -> its value: the choice, the text (lines joined) or the number."""
    found: dict[str, Any] = {}
    for region in result:
        value = region.get("value") or {}
        if "choices" in value:
            found[region.get("from_name")] = (value["choices"] or [None])[0]
        elif "text" in value:
            text = value["text"]
            found[region.get("from_name")] = "\n".join(text) if isinstance(text, list) else text
        elif "number" in value:
            found[region.get("from_name")] = value["number"]
    return found


def decision_from_task(entry: dict[str, Any]) -> Decision | None:
    data = entry.get("data") or {}
    annotation = _latest_annotation(entry.get("annotations") or [])
    if annotation is None or "record_id" not in data:
        return None
    controls = _controls(annotation.get("result") or [])
    action = controls.get("decision")
    if action is None:
        return None
    fields: dict[str, Any] = {
        "id": str(data["record_id"]),
        "decision": action,
        "reason": controls.get("reason") if action == "reject" else None,
        "note": controls.get("note") or "",
        "reviewed": data.get("reviewed"),
        "source": SOURCE,
    }
    if annotation.get("completed_by") is not None:
        fields["reviewer"] = f"labelstudio:{annotation['completed_by']}"
    if action == "edit":
        fields["text"] = controls.get("edit")
        fields["chosen"] = data.get("chosen")
    if action == "pick":
        number = controls.get("pick")
        fields["chosen"] = int(number) - 1 if isinstance(number, int | float) else None
    return Decision.model_validate(fields)


def import_annotations(export: Path, run_dir: Path) -> int:
    """Append the export's decisions to the run's review.jsonl; returns how many were new."""
    try:
        entries = orjson.loads(export.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise InputError(f"{export}: not a Label Studio JSON export: {exc}") from None
    if not isinstance(entries, list):
        raise InputError(f"{export}: expected a JSON list of tasks (Label Studio's JSON export)")
    path = run_dir / DECISIONS_FILE
    current = latest_decisions(path)
    new = []
    for index, entry in enumerate(entries):
        try:
            decision = decision_from_task(entry) if isinstance(entry, dict) else None
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            detail = f"{where}: {first['msg']}" if where else first["msg"]
            raise InputError(f"{export}: task {index}: {detail}") from None
        if decision is not None and not _same(current.get(decision.id), decision):
            new.append(decision)
            current[decision.id] = decision
    return append_decisions(path, new)


def _same(old: Decision | None, new: Decision) -> bool:
    if old is None:
        return False
    return old.model_dump(exclude={"at"}) == new.model_dump(exclude={"at"})
