"""Magpie's pre-query is cut from the model's own chat template, never typed per model."""

from __future__ import annotations

from pathlib import Path

import pytest
from gguf_files import GEMMA3_CHAT_TEMPLATE

from distillpipe.chat_templates import (
    SENTINEL,
    ChatTemplate,
    gguf_chat_template,
    hf_chat_template,
    llama_cpp_render,
    load_chat_template,
)
from distillpipe.errors import ConfigError
from distillpipe.models import gguf_metadata

QUESTION = "What is the capital of France?"
HISTORY = [
    {"role": "user", "content": "Name a colour."},
    {"role": "assistant", "content": "Blue."},
]
CHATML = (
    "{{ bos_token }}{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def rendered_up_to(template: str, messages: list[dict], content: str, bos: str, eos: str) -> str:
    """The template's own rendering of ``messages`` (Jinja, as transformers sets it up),
    up to where ``content`` starts."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    text = env.from_string(template).render(
        messages=messages, bos_token=bos, eos_token=eos, add_generation_prompt=False
    )
    return text[: text.index(content)]


def test_the_gguf_carries_the_template_the_test_built_into_it(gemma_with_chat_template: Path):
    metadata = gguf_metadata(gemma_with_chat_template, ["tokenizer.chat_template", "general.name"])
    assert metadata == {
        "tokenizer.chat_template": GEMMA3_CHAT_TEMPLATE,
        "general.name": "Gemma 3 270m",
    }


@pytest.mark.parametrize(
    "history",
    [[], [{"role": "system", "content": "Answer briefly."}], HISTORY],
    ids=["first-turn", "system-folded-into-user", "after-two-turns"],
)
def test_the_pre_query_equals_the_gguf_templates_rendering_up_to_the_user_content(
    gemma_with_chat_template: Path, history: list[dict]
):
    template = gguf_chat_template(gemma_with_chat_template)
    expected = rendered_up_to(
        GEMMA3_CHAT_TEMPLATE, [*history, {"role": "user", "content": QUESTION}], QUESTION,
        "<bos>", "<eos>",
    )  # fmt: skip
    assert template.pre_query_text(history) == expected
    assert expected.startswith("<bos><start_of_turn>user\n")
    # llama.cpp adds gemma's BOS itself (add_bos_token), so the prompt sent leaves it out
    assert template.adds_bos
    assert template.pre_query(history) == expected.removeprefix("<bos>")
    assert template.user_turn_stops() == ("<end_of_turn>", "<eos>")


def test_llama_cpp_reads_the_sent_pre_query_with_exactly_one_bos(gemma_with_chat_template: Path):
    from llama_cpp import Llama

    llm = Llama(model_path=str(gemma_with_chat_template), vocab_only=True, verbose=False)
    template = gguf_chat_template(gemma_with_chat_template)
    tokens = llm.tokenize(template.pre_query().encode(), add_bos=True, special=True)
    assert tokens[0] == llm.token_bos() and tokens.count(llm.token_bos()) == 1
    assert llm.detokenize(tokens[1:], special=True).decode() == "<start_of_turn>user\n"
    llm.close()


def test_the_generation_prompt_ends_where_the_model_answers(gemma_with_chat_template: Path):
    template = gguf_chat_template(gemma_with_chat_template)
    prompt = template.generation_prompt(HISTORY[:1])
    assert prompt == "<start_of_turn>user\nName a colour.<end_of_turn>\n<start_of_turn>model\n"


def test_a_hugging_face_tokenizers_template_gives_the_same_cut(tmp_path: Path):
    from filters.tiny_models import build_tokenizer

    tokenizer = build_tokenizer(tmp_path)
    tokenizer.chat_template = CHATML
    tokenizer.save_pretrained(tmp_path)
    template = load_chat_template(tmp_path)  # a folder: read as a Hugging Face tokenizer
    conversation = [*HISTORY, {"role": "user", "content": QUESTION}]
    rendered = tokenizer.apply_chat_template(conversation, tokenize=False)
    expected = rendered[: rendered.index(QUESTION)]
    assert template.pre_query_text(HISTORY) == expected
    # this tokenizer adds no BOS of its own, so the template's stays in the prompt
    assert not template.adds_bos
    assert template.pre_query(HISTORY) == expected and expected.startswith("<s>")
    assert template.user_turn_stops() == ("<|im_end|>", "</s>")


DATED = (
    "{{ bos_token }}Today Date: {{ strftime_now('%d %b %Y') }}\n"
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|eot|>{% endfor %}"
)


def test_a_template_that_prints_todays_date_sees_a_fixed_one(tmp_path: Path):
    """Llama 3.1+ templates print the date: the prompt (the cache key) must not follow the clock."""
    from filters.tiny_models import build_tokenizer

    tokenizer = build_tokenizer(tmp_path)
    tokenizer.chat_template = DATED
    tokenizer.save_pretrained(tmp_path)
    expected = "Today Date: 26 Jul 2024\n<|user|>"
    assert hf_chat_template(str(tmp_path)).pre_query().endswith(expected)
    template = ChatTemplate("t", llama_cpp_render(DATED, "<s>", "</s>"), "<s>", "</s>", True)
    assert template.pre_query() == expected


def test_a_template_that_does_not_show_the_content_verbatim_is_refused():
    template = ChatTemplate(
        "test", lambda messages, generation: "".join(m["content"].lower() for m in messages),
        "", "", False,
    )  # fmt: skip
    assert SENTINEL.lower() != SENTINEL
    with pytest.raises(ConfigError, match="verbatim"):
        template.pre_query()


def test_a_gguf_without_a_chat_template_names_the_key_to_set(gguf_path: Path):
    with pytest.raises(ConfigError, match=r"carries no chat template.*magpie\.chat_template"):
        gguf_chat_template(gguf_path)


def test_a_tokenizer_folder_that_is_not_there_is_a_config_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="no tokenizer"):
        hf_chat_template(str(tmp_path / "missing"))
