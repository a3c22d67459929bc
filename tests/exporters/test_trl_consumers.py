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

CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant\n{% endif %}"
)
ALPACA_TEXT = "### Instruction:\n{instruction}\n\n{input}\n\n### Response:\n{output}</s>"
ROLES = {"system": "system", "human": "user", "gpt": "assistant"}


def records(count: int = 6) -> list[dict]:
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
    return out


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    corpus = [f"{r['instruction']} {r['input']} {r['system']} {t['text']}" for r in records()
              for t in r["responses"]] + [CHAT_TEMPLATE, ALPACA_TEXT]  # fmt: skip
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


def exported_dataset(tmp_path: Path, source: list[dict] | None = None, **export: object):
    from datasets import load_dataset

    data = {**small_llamacpp_config(), "export": export}
    config = load_config(write_config(tmp_path / "config.yaml", data))
    write_export(build_export(source or records(), config), config, tmp_path / "out", None)
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
