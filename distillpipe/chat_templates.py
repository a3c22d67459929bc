"""A model's own chat template, and the raw prompts Magpie cuts from it.

Magpie (Xu et al. 2024) sends an aligned model only the text its chat template
puts before a user message's content (the *pre-query*): the model then writes a
user turn itself. The pre-query is never typed by hand per model: the template
is rendered with a sentinel as the user's content and cut at the sentinel, so a
system prompt the template folds into the first user turn (gemma), role headers
(Llama 3) or earlier turns (multi-turn Magpie) come along as the template has them.

Templates come from where the model keeps them:

- a GGUF file's metadata (``tokenizer.chat_template``), read from its header and
  rendered by llama-cpp-python's ``Jinja2ChatFormatter``: what llama.cpp's chat
  mode renders for that file;
- a Hugging Face tokenizer (a folder or a hub id in the local cache): its
  ``chat_template``, BOS and EOS, rendered the same way (the tests check the cut
  against the tokenizer's own ``apply_chat_template``).

BOS: templates open with ``bos_token``, and so does the tokenizer of a backend
that takes raw prompts when its vocabulary says to add one (llama.cpp's
``tokenizer.ggml.add_bos_token``, a Hugging Face tokenizer's special tokens).
The prompt sent leaves the template's BOS out exactly when the backend adds its
own, so the model sees one BOS, never two.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from distillpipe.errors import ConfigError, MissingDependencyError
from distillpipe.models import gguf_metadata
from distillpipe.teachers.base import TeacherOptions

Message = dict[str, str]
Render = Callable[[list[Message], bool], str]  # (messages, add_generation_prompt) -> text

# Templates that print today's date (Llama 3.1+ through ``strftime_now``) see this one, so
# a prompt, and with it a cache key, never depends on the clock; it is Llama 3's fallback.
FIXED_DATE = datetime(2024, 7, 26)
SENTINEL = "DISTILLPIPEMAGPIEUSERTURN"  # plain letters: no template filter (trim, escape) alters it


@dataclass(frozen=True)
class ChatTemplate:
    source: str  # where it came from, for errors
    render: Render
    bos_token: str
    eos_token: str
    adds_bos: bool  # the backend's tokenizer adds a BOS to a raw prompt itself

    def _rendered_with_sentinel(self, messages: Sequence[Message]) -> tuple[str, str]:
        conversation = [*messages, {"role": "user", "content": SENTINEL}]
        try:
            text = self.render(conversation, False)
        except Exception as exc:  # a template's own raise_exception, a Jinja error
            raise ConfigError(f"{self.source}: the chat template failed: {exc}") from exc
        if text.count(SENTINEL) != 1:
            raise ConfigError(
                f"{self.source}: the chat template does not render a user message's "
                "content verbatim once, so no pre-query can be cut from it"
            )
        before, after = text.split(SENTINEL)
        return before, after

    def pre_query_text(self, messages: Sequence[Message] = ()) -> str:
        """The template's own rendering of ``messages`` and a new user turn, up to
        where that turn's content starts (with the template's BOS)."""
        return self._rendered_with_sentinel(messages)[0]

    def pre_query(self, messages: Sequence[Message] = ()) -> str:
        """The raw prompt that makes the model write the next user turn."""
        return self._without_bos(self.pre_query_text(messages))

    def generation_prompt(self, messages: Sequence[Message]) -> str:
        """The raw prompt that makes the model write the assistant's answer to ``messages``."""
        try:
            text = self.render(list(messages), True)
        except Exception as exc:
            raise ConfigError(f"{self.source}: the chat template failed: {exc}") from exc
        return self._without_bos(text)

    def user_turn_stops(self) -> tuple[str, ...]:
        """Where a generated user turn ends: the text the template writes after a
        user's content (``<end_of_turn>``, ``<|eot_id|>``, ``<|im_end|>``), and EOS."""
        after = self._rendered_with_sentinel(())[1].strip()
        stops = [after.split()[0]] if after else []
        if self.eos_token and self.eos_token not in stops:
            stops.append(self.eos_token)
        return tuple(stops)

    def _without_bos(self, text: str) -> str:
        if self.adds_bos and self.bos_token and text.startswith(self.bos_token):
            return text[len(self.bos_token) :]
        return text


def is_gguf(path: str | Path) -> bool:
    candidate = Path(path).expanduser()
    if not candidate.is_file():
        return False
    with candidate.open("rb") as stream:
        return stream.read(4) == b"GGUF"


def load_chat_template(source: str | Path) -> ChatTemplate:
    """The chat template of a GGUF file or of a Hugging Face tokenizer (folder or id)."""
    return gguf_chat_template(source) if is_gguf(source) else hf_chat_template(str(source))


GGUF_KEYS = (
    "tokenizer.chat_template",
    "tokenizer.ggml.tokens",
    "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.add_bos_token",
    "tokenizer.ggml.model",
)


def gguf_chat_template(path: str | Path) -> ChatTemplate:
    metadata = gguf_metadata(path, GGUF_KEYS)
    template = metadata.get("tokenizer.chat_template")
    if not template:
        raise ConfigError(
            f"{path}: the GGUF carries no chat template (tokenizer.chat_template); name a GGUF "
            "or a Hugging Face tokenizer that has one in magpie.chat_template"
        )
    tokens = metadata.get("tokenizer.ggml.tokens") or []

    def token(key: str) -> str:
        index = metadata.get(key)
        return tokens[index] if isinstance(index, int) and 0 <= index < len(tokens) else ""

    bos, eos = token("tokenizer.ggml.bos_token_id"), token("tokenizer.ggml.eos_token_id")
    # llama.cpp's default when the file does not say: SentencePiece-style vocabularies add one
    adds_bos = metadata.get(
        "tokenizer.ggml.add_bos_token", metadata.get("tokenizer.ggml.model") == "llama"
    )
    return ChatTemplate(str(path), llama_cpp_render(template, bos, eos), bos, eos, bool(adds_bos))


def llama_cpp_render(template: str, bos: str, eos: str) -> Render:
    """``template`` rendered as llama-cpp-python renders a GGUF's template, on FIXED_DATE."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    class FixedDateFormatter(Jinja2ChatFormatter):
        @staticmethod
        def strftime_now(format: str) -> str:
            return FIXED_DATE.strftime(format)

    formatters = {
        generation: FixedDateFormatter(
            template, eos_token=eos, bos_token=bos, add_generation_prompt=generation
        )
        for generation in (False, True)
    }

    def render(messages: list[Message], add_generation_prompt: bool) -> str:
        return formatters[add_generation_prompt](messages=messages).prompt

    return render


def hf_chat_template(name: str) -> ChatTemplate:
    try:
        from transformers import AutoTokenizer
    except ImportError as exc:
        raise MissingDependencyError("a Hugging Face tokenizer's chat template", "hf") from exc
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"magpie.chat_template: no tokenizer at {name!r}: {exc}") from exc
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(f"{name}: the tokenizer carries no chat_template")
    bos, eos = tokenizer.bos_token or "", tokenizer.eos_token or ""
    encoded = tokenizer("x", add_special_tokens=True)["input_ids"]
    adds_bos = bool(bos) and bool(encoded) and encoded[0] == tokenizer.bos_token_id

    # rendered as a GGUF's template is (the Jinja set-up transformers uses too), since
    # apply_chat_template gives a template no way to see a fixed date
    render = llama_cpp_render(tokenizer.chat_template, bos, eos)
    return ChatTemplate(name, render, bos, eos, adds_bos)


_loaded: dict[str, ChatTemplate] = {}


def teacher_chat_template(teacher: TeacherOptions, explicit: str | None, key: str) -> ChatTemplate:
    """The template named at config ``key`` (``explicit``), else the teacher's own model's."""
    source = explicit or teacher.chat_template_source()
    if source is None:
        raise ConfigError(
            f"{key}: teacher.backend {teacher.backend} cannot tell its model's chat template; "
            "name the model's GGUF or Hugging Face tokenizer there"
        )
    if source not in _loaded:
        _loaded[source] = load_chat_template(source)
    return _loaded[source]
