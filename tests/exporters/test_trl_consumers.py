"""Real consumers: every export format loads with ``datasets.load_dataset("json")`` and
trains a couple of steps in TRL's SFTTrainer / DPOTrainer on a tiny model built here
(random weights, a tokenizer trained on the spot), on the CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import small_llamacpp_config, write_config

from distillpipe.config import load_config
from distillpipe.stages.export import build_export, write_export

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning:transformers")

CHAT_TEMPLATE = (  # renders reasoning_content as Qwen3's template does
    "{% for m in messages %}<s>{{ m['role'] }}\n"
    "{% if m.get('reasoning_content') %}<think>\n{{ m['reasoning_content'] }}\n</think>\n\n"
    "{% endif %}{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant\n{% endif %}"
)
ALPACA_TEXT = "### Instruction:\n{instruction}\n\n{input}\n\n### Response:\n{output}</s>"
ROLES = {"system": "system", "human": "user", "gpt": "assistant"}


def trace(i: int, sample: int) -> str:
    return f"Zero changes nothing, so {i} plus zero is {i}." if sample == 0 else f"Is it {i}?"


def records(count: int = 6, traced: bool = False) -> list[dict]:
    out = []
    for i in range(count):
        texts = [f"The answer is {i}.", f"I am not sure about {i}."]
        out.append({
            "id": f"q{i}", "instruction": f"What is {i} plus zero?", "input": "" if i % 2 else "x",
            "system": "Answer in one sentence." if i % 3 == 0 else None,
            "responses": [{"text": t, "model": "teacher", "finish_reason": "stop", "usage": {},
                           "sample": s} for s, t in enumerate(texts)],
            "selection": {"chosen": 0, "rejected": 1, "by": "reward"},
        })  # fmt: skip
        if traced:
            for response in out[-1]["responses"]:
                response.update(reasoning=trace(i, response["sample"]), reasoning_kind="raw")
    return out


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    corpus = [
        f"{r['instruction']} {r['input']} {r['system']} {t['text']} {t['reasoning']}"
        for r in records(traced=True)
        for t in r["responses"]
    ]
    corpus += [CHAT_TEMPLATE, ALPACA_TEXT]  # fmt: skip
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<unk>", "<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    ))  # fmt: skip
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, unk_token="<unk>", pad_token="<pad>", bos_token="<s>",
        eos_token="</s>",
    )  # fmt: skip
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    ))  # fmt: skip
    directory = tmp_path_factory.mktemp("tiny-model")
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return str(directory)


def conversations(count: int = 4) -> list[dict]:
    """Three-turn records as generate's conversation mode writes them."""
    out = []
    for i in range(count):
        messages = [{"role": "system", "content": "Answer in one sentence."}] if i % 2 else []
        for turn in range(3):
            messages += [
                {"role": "user", "content": f"What is {i} plus {turn}?"},
                {"role": "assistant", "content": f"The answer is {i + turn}."},
            ]
        out.append({"id": f"c{i}", "instruction": messages[-6]["content"], "messages": messages})
    return out


def exported_dataset(
    tmp_path: Path, source: list[dict] | None = None, traced: bool = False, **export: object
):
    from datasets import load_dataset

    data = {**small_llamacpp_config(), "export": export}
    config = load_config(write_config(tmp_path / "config.yaml", data))
    write_export(
        build_export(source or records(traced=traced), config), config, tmp_path / "out", None
    )
    return load_dataset(
        "json", data_files=str(tmp_path / "out" / "train.jsonl"), split="train",
        cache_dir=str(tmp_path / "hf-cache"),
    )  # fmt: skip


def train_args(tmp_path: Path, config_class):
    return config_class(
        output_dir=str(tmp_path / "trainer"), max_steps=2, per_device_train_batch_size=2,
        max_length=96, report_to=[], use_cpu=True, save_strategy="no", disable_tqdm=True,
        logging_steps=1, seed=0,
    )  # fmt: skip


def sft_steps(tmp_path: Path, model: str, dataset, formatting_func=None) -> list[dict]:
    from trl import SFTConfig, SFTTrainer

    trainer = SFTTrainer(
        model=model, args=train_args(tmp_path, SFTConfig), train_dataset=dataset,
        formatting_func=formatting_func,
    )  # fmt: skip
    trainer.train()
    return [log for log in trainer.state.log_history if "loss" in log]


def sharegpt_text(example: dict) -> str:
    return "".join(f"<s>{ROLES[t['from']]}\n{t['value']}</s>\n" for t in example["conversations"])


def alpaca_text(example: dict) -> str:
    return ALPACA_TEXT.format(**example)


@pytest.mark.parametrize(
    ("export", "columns", "formatting_func"),
    [
        ({"format": "messages"}, {"messages"}, None),
        ({"format": "prompt-completion"}, {"prompt", "completion"}, None),
        ({"format": "prompt-completion", "conversational": False}, {"prompt", "completion"}, None),
        ({"format": "sharegpt"}, {"conversations"}, sharegpt_text),
        ({"format": "alpaca"}, {"instruction", "input", "output", "system"}, alpaca_text),
    ],
    ids=["messages", "prompt-completion", "prompt-completion-text", "sharegpt", "alpaca"],
)
def test_sft_formats_train_in_trl_sft_trainer(
    tmp_path: Path, tiny_model: str, export: dict, columns: set, formatting_func
):
    dataset = exported_dataset(tmp_path, **export)
    assert set(dataset.column_names) == columns
    assert len(dataset) == 6
    steps = sft_steps(tmp_path, tiny_model, dataset, formatting_func)
    assert len(steps) == 2
    assert all(step["loss"] > 0 for step in steps)


def test_dpo_pairs_train_in_trl_dpo_trainer(tmp_path: Path, tiny_model: str):
    from trl import DPOConfig, DPOTrainer

    dataset = exported_dataset(tmp_path, format="dpo")
    assert set(dataset.column_names) == {"prompt", "chosen", "rejected"}
    trainer = DPOTrainer(
        model=tiny_model, args=train_args(tmp_path, DPOConfig), train_dataset=dataset
    )
    trainer.train()
    steps = [log for log in trainer.state.log_history if "loss" in log]
    assert len(steps) == 2
    assert all("rewards/margins" in step for step in steps)


@pytest.mark.parametrize(
    ("format", "column", "formatting_func"),
    [("messages", "messages", None), ("sharegpt", "conversations", sharegpt_text)],
)
def test_multi_turn_exports_train_in_trl_sft_trainer(
    tmp_path: Path, tiny_model: str, format: str, column: str, formatting_func
):
    dataset = exported_dataset(tmp_path, conversations(), format=format)
    assert set(dataset.column_names) == {column}
    assert sorted(len(row[column]) for row in dataset) == [6, 6, 7, 7]  # 3 turns (+ system)
    steps = sft_steps(tmp_path, tiny_model, dataset, formatting_func)
    assert len(steps) == 2
    assert all(step["loss"] > 0 for step in steps)


LAYOUTS = [
    ({"reasoning": "inline"}, ("<think>", "</think>")),
    ({"reasoning": "inline", "reasoning_tags": ["<reasoning>", "</reasoning>"]},
     ("<reasoning>", "</reasoning>")),
    ({"reasoning": "field"}, None),
    ({"reasoning": "drop"}, None),
]  # fmt: skip


def check_assistant(message: dict, layout: str, tags, i: int, sample: int) -> None:
    answer = ["The answer is {}.", "I am not sure about {}."][sample].format(i)
    if layout == "inline":
        opening, closing = tags
        assert message["content"] == f"{opening}\n{trace(i, sample)}\n{closing}\n\n{answer}"
    else:
        assert message["content"] == answer
    expected = trace(i, sample) if layout == "field" else None
    assert message.get("reasoning_content") == expected


@pytest.mark.parametrize(("export", "tags"), LAYOUTS, ids=["inline", "tags", "field", "drop"])
def test_reasoning_layouts_train_in_trl_sft_trainer(tmp_path: Path, tiny_model: str, export, tags):
    dataset = exported_dataset(tmp_path, traced=True, format="messages", **export)
    for row in dataset:
        i = int(row["messages"][-2]["content"].split()[2])
        check_assistant(row["messages"][-1], export["reasoning"], tags, i, 0)
    card = (tmp_path / "out" / "README.md").read_text()
    assert "6 of the 6 rows come from a sample with a reasoning trace" in card
    steps = sft_steps(tmp_path, tiny_model, dataset)
    assert len(steps) == 2 and all(step["loss"] > 0 for step in steps)


@pytest.mark.parametrize("layout", ["inline", "field"])
def test_reasoning_layouts_of_dpo_pairs_train_in_trl_dpo_trainer(
    tmp_path: Path, tiny_model: str, layout: str
):
    from trl import DPOConfig, DPOTrainer

    dataset = exported_dataset(tmp_path, traced=True, format="dpo", reasoning=layout)
    for row in dataset:
        i = int(row["prompt"][-1]["content"].split()[2])
        check_assistant(row["chosen"][0], layout, ("<think>", "</think>"), i, 0)
        check_assistant(row["rejected"][0], layout, ("<think>", "</think>"), i, 1)
    trainer = DPOTrainer(
        model=tiny_model, args=train_args(tmp_path, DPOConfig), train_dataset=dataset
    )
    trainer.train()
    assert len([log for log in trainer.state.log_history if "loss" in log]) == 2
