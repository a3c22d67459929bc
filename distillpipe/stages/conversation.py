"""generate's conversation mode: multi-turn conversations, one cached call per turn.

From a record's first user turn (its instruction and input), the teacher answers;
then a user turn is written and answered again, for ``generate.conversation.turns``
assistant turns. The user turns come from

- ``user: simulator``: the teacher plays the user (``prompts/conversation/user.*``),
  told which move to make — a follow-up, a clarification, a new constraint
  (``moves.txt``, one drawn per turn from the config seed and the record id) — and,
  when the record names one, which persona it plays (``persona_of``);
- ``user: magpie``: the model's own chat template, cut before the next user
  turn's content (``chat_templates.py``), as Magpie does for the first turn.

Every turn is one request through the cached dispatcher, and each request
depends only on the record and the cached turns before it, so a rerun asks
nothing and a killed run resumes mid-conversation, asking only the turns it
had not finished. The records of a batch advance turn by turn together.

A record gains ``messages`` (the whole conversation, the system prompt first when
there is one) and ``conversation``: ``assistant`` (model, finish_reason, usage and
provenance of each assistant turn), ``users`` (where each user turn came from, with
its provenance when a teacher wrote it) and ``ended`` when a simulated user wrote
nothing and the conversation stopped early.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from distillpipe.chat_templates import ChatTemplate, teacher_chat_template
from distillpipe.config import Config, ConversationConfig
from distillpipe.dispatch import Dispatcher
from distillpipe.prompts import Prompts, prompts_for
from distillpipe.provenance import Provenance, template_hash
from distillpipe.records import user_prompt
from distillpipe.stages.base import Record, StageContext
from distillpipe.teachers.base import Completion, Message, Request

PERSONA_KEYS = ("persona", "description", "name")
_USER_LABEL = re.compile(r"^\s*(?:\*\*)?user\s*:\s*(?:\*\*)?\s*", re.IGNORECASE)


def persona_of(record: Record) -> str:
    """The persona a record names (``origin.persona``, else ``meta.persona``): a string,
    or an object whose ``persona``, ``description`` or ``name`` is used; "" when none."""
    for holder in (record.get("origin"), record.get("meta")):
        value = holder.get("persona") if isinstance(holder, dict) else None
        if isinstance(value, dict):
            text = next((value[k] for k in PERSONA_KEYS if isinstance(value.get(k), str)), None)
            value = text if text is not None else json.dumps(value, sort_keys=True)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""


def cleaned_user_turn(text: str) -> str:
    """A simulated user turn without the label a model may echo ("User: ...")."""
    return _USER_LABEL.sub("", text.strip(), count=1).strip()


def turn_meta(completion: Completion, request: Request, provenance: Provenance) -> dict[str, Any]:
    """What a turn keeps of its completion besides the text (the turn's message)."""
    meta = completion.to_cache()
    del meta["text"]
    meta.pop("created", None)  # the provenance carries it
    meta["provenance"] = provenance.of(request, 0, completion)
    return meta


@dataclass
class Conversation:
    record: Record
    system: str | None
    messages: list[Message]  # user and assistant turns; the system prompt apart
    assistant: list[dict[str, Any]] = field(default_factory=list)
    users: list[dict[str, Any]] = field(default_factory=list)
    ended: str | None = None

    def finish(self) -> Record:
        system = [{"role": "system", "content": self.system}] if self.system else []
        self.record["messages"] = system + self.messages
        summary: dict[str, Any] = {"assistant": self.assistant, "users": self.users}
        if self.ended is not None:
            summary["ended"] = self.ended
        self.record["conversation"] = summary
        return self.record


@dataclass(frozen=True)
class TurnProvenance:
    user: Provenance
    assistant: Provenance


class TurnPrompter:
    """The request for each next turn of a conversation, user or assistant."""

    def __init__(self, config: Config, mode: str, prompts: Prompts) -> None:
        section = config.generate.conversation
        assert section is not None
        self.config, self.section, self.mode, self.prompts = config, section, mode, prompts
        self.moves = prompts.lines("conversation/moves.txt")
        self.template: ChatTemplate | None = None
        if section.user == "magpie":
            self.template = teacher_chat_template(
                config.teacher, section.chat_template, "generate.conversation.chat_template"
            )
        user_name = f"conversation/user.{mode}.jinja"
        self.user_template = prompts.template(user_name)
        # the model's own chat template (magpie), or in chat mode the conversation itself,
        # shapes a request that no template of ours rendered
        self.user_provenance_template: str | None = None
        self.assistant_provenance_template: str | None = None
        if self.template is None:
            self.user_provenance_template = template_hash(prompts.text(user_name))
        if mode == "completion":
            assistant_name = "conversation/assistant.completion.jinja"
            self.assistant_template = prompts.template(assistant_name)
            if self.template is None:
                self.assistant_provenance_template = template_hash(prompts.text(assistant_name))

    def _history(self, talk: Conversation) -> list[Message]:
        system = [{"role": "system", "content": talk.system}] if talk.system else []
        return system + talk.messages

    def move(self, record: Record, turn: int) -> str:
        draw = hashlib.sha256(f"{self.config.seed}:conversation:{record['id']}:{turn}".encode())
        return self.moves[int.from_bytes(draw.digest()[:4], "big") % len(self.moves)]

    def assistant(self, talk: Conversation, turn: int) -> Request:
        request_id = f"{talk.record['id']}:turn{turn}:assistant"
        generate = self.config.generate
        if self.template is not None:
            prompt = self.template.generation_prompt(self._history(talk))
            params = generate.sampling_params(self.template.user_turn_stops())
            return Request(id=request_id, params=params, prompt=prompt)
        if self.mode == "chat":
            messages = tuple(self._history(talk))
            return Request(id=request_id, params=generate.sampling_params(), messages=messages)
        prompt = self.assistant_template.render(messages=talk.messages, system=talk.system or "")
        params = generate.sampling_params(self.prompts.lines("conversation/assistant.stop.txt"))
        return Request(id=request_id, params=params, prompt=prompt.rstrip())

    def user(self, talk: Conversation, turn: int) -> tuple[Request, dict[str, Any]]:
        request_id = f"{talk.record['id']}:turn{turn}:user"
        sampling = self.section.user_sampling
        if self.template is not None:
            prompt = self.template.pre_query(self._history(talk))
            params = sampling.sampling_params(self.template.user_turn_stops())
            return Request(id=request_id, params=params, prompt=prompt), {"source": "magpie"}
        move, persona = self.move(talk.record, turn), persona_of(talk.record)
        text = self.user_template.render(messages=talk.messages, persona=persona, move=move)
        source = {"source": "simulator", "move": move}
        if self.mode == "chat":
            messages = ({"role": "user", "content": text.strip()},)
            params = sampling.sampling_params()
            return Request(id=request_id, params=params, messages=messages), source
        params = sampling.sampling_params(self.prompts.lines("conversation/user.stop.txt"))
        return Request(id=request_id, params=params, prompt=text.rstrip()), source


async def converse(
    records: Iterator[Record],
    ctx: StageContext,
    system_prompt_for: Callable[[Record, Config], str | None],
) -> AsyncIterator[Record]:
    """The conversation of every record, in input order (``system_prompt_for(record,
    config)`` gives the system prompt, as single-turn generate gives it)."""
    config = ctx.config
    section = config.generate.conversation
    assert section is not None
    dispatcher = ctx.dispatcher()
    prompter = TurnPrompter(config, dispatcher.teacher.mode, prompts_for(config))
    provenance = TurnProvenance(
        user=Provenance(dispatcher, prompter.user_provenance_template),
        assistant=Provenance(dispatcher, prompter.assistant_provenance_template),
    )
    batch: list[Conversation] = []
    for record in records:
        messages = [{"role": "user", "content": user_prompt(record)}]
        talk = Conversation(record, system_prompt_for(record, config), messages)
        talk.users.append({"source": "input"})
        batch.append(talk)
        if len(batch) == config.generate.batch_size:
            for done in await _advance(batch, section, prompter, dispatcher, provenance):
                yield done
            batch = []
    if batch:
        for done in await _advance(batch, section, prompter, dispatcher, provenance):
            yield done


async def _advance(
    batch: list[Conversation],
    section: ConversationConfig,
    prompter: TurnPrompter,
    dispatcher: Dispatcher,
    provenance: TurnProvenance,
) -> list[Record]:
    """Every conversation of ``batch`` to its end, all of them turn by turn together."""
    for turn in range(section.turns):
        if turn > 0:
            live = [talk for talk in batch if talk.ended is None]
            asked = [prompter.user(talk, turn) for talk in live]
            answers = await dispatcher.resolve([request for request, _ in asked])
            for talk, (request, source), (completion,) in zip(live, asked, answers, strict=True):
                text = cleaned_user_turn(completion.text)
                if not text:
                    talk.ended = f"turn {turn + 1}: the user turn was empty"
                    continue
                talk.messages.append({"role": "user", "content": text})
                talk.users.append({**source, **turn_meta(completion, request, provenance.user)})
        live = [talk for talk in batch if talk.ended is None]
        requests = [prompter.assistant(talk, turn) for talk in live]
        answers = await dispatcher.resolve(requests)
        for talk, request, (completion,) in zip(live, requests, answers, strict=True):
            talk.messages.append({"role": "assistant", "content": completion.text.strip()})
            talk.assistant.append(turn_meta(completion, request, provenance.assistant))
    return [talk.finish() for talk in batch]
