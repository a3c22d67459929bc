"""Tiny Hugging Face models built on the spot (random weights, a tokenizer trained
here), so the real transformers loading, batching and scoring code runs offline."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

CORPUS = [
    "The cat sat on the mat and looked at the moon.",
    "Water boils at one hundred degrees at sea level.",
    "Name three primary colours. Red, yellow and blue.",
    "The answer is 42 because six times seven is forty two.",
    "Describe the water cycle in simple words for a child.",
    "Paris is the capital of France and Rome is the capital of Italy.",
] * 20

CHAT_TEMPLATE = "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"


def build_tokenizer(folder: Path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(CORPUS, trainer)
    from tokenizers import decoders

    tokenizer.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(folder)
    return fast


def tiny_llama_config(tokenizer):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


@pytest.fixture(scope="session")
def tiny_causal_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny-causal-lm")
    tokenizer = build_tokenizer(folder)
    torch.manual_seed(0)
    LlamaForCausalLM(tiny_llama_config(tokenizer)).save_pretrained(folder)
    return folder


def save_llama_reward_model(folder: Path, tokenizer: Any, seed: int) -> Path:
    """A tiny Llama sequence classifier (one label) with random weights, saved to ``folder``."""
    import torch
    from transformers import LlamaForSequenceClassification

    config = tiny_llama_config(tokenizer)
    config.num_labels = 1
    torch.manual_seed(seed)
    LlamaForSequenceClassification(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_reward_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-reward-model")
    return save_llama_reward_model(folder, build_tokenizer(folder), seed=1)


def build_pair_tokenizer(folder: Path):
    """A BERT/DeBERTa-style tokenizer: WordPiece, ``[CLS] A [SEP] B [SEP]`` for a text pair,
    no chat template (as OpenAssistant's deberta reward models have)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer.train_from_iterator(
        CORPUS, trainers.WordPieceTrainer(vocab_size=300, special_tokens=special)
    )
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    tokenizer.decoder = decoders.WordPiece()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        cls_token="[CLS]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        unk_token="[UNK]",
        mask_token="[MASK]",
        model_max_length=128,
    )
    fast.save_pretrained(folder)
    return fast


BOS_CHAT_TEMPLATE = "{{ bos_token }}" + CHAT_TEMPLATE


def build_bos_chat_tokenizer(folder: Path):
    """A Llama-style tokenizer: BOS added to plain text, and a chat template that
    writes BOS itself (Llama 3 and Skywork templates start with ``{{ bos_token }}``)."""
    from tokenizers import processors

    fast = build_tokenizer(folder)
    bos = fast.bos_token_id
    fast.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)]
    )
    fast.chat_template = BOS_CHAT_TEMPLATE
    fast.save_pretrained(folder)
    return fast


@pytest.fixture(scope="session")
def tiny_pair_reward_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DeBERTa-v2 reward model scoring (question, answer) pairs, without a chat template."""
    import torch
    from transformers import DebertaV2Config, DebertaV2ForSequenceClassification

    folder = tmp_path_factory.mktemp("tiny-pair-reward-model")
    tokenizer = build_pair_tokenizer(folder)
    config = DebertaV2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=128,
        relative_attention=True,
        position_biased_input=False,
        pos_att_type=["p2c", "c2p"],
        type_vocab_size=0,
        pad_token_id=tokenizer.pad_token_id,
        num_labels=1,
    )
    torch.manual_seed(2)
    DebertaV2ForSequenceClassification(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_bos_chat_reward_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Llama reward model whose chat template writes BOS and whose tokenizer adds it too."""
    folder = tmp_path_factory.mktemp("tiny-bos-chat-reward-model")
    return save_llama_reward_model(folder, build_bos_chat_tokenizer(folder), seed=3)


OWN_CONFIG_AND_MODEL = '''
import torch
from transformers import PreTrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput


class TinyOwnRewardConfig(PreTrainedConfig):
    model_type = "tiny-own-reward"

    def __init__(self, vocab_size=300, hidden_size=8, **kwargs):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        super().__init__(**kwargs)


class TinyOwnRewardModel(PreTrainedModel):
    """Mean-pooled embeddings and a linear head: an architecture transformers lacks."""

    config_class = TinyOwnRewardConfig

    def __init__(self, config):
        super().__init__(config)
        self.embed = torch.nn.Embedding(config.vocab_size, config.hidden_size)
        self.head = torch.nn.Linear(config.hidden_size, 1)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        mask = attention_mask.unsqueeze(-1).float()
        pooled = (self.embed(input_ids) * mask).sum(1) / mask.sum(1)
        return SequenceClassifierOutput(logits=self.head(pooled))
'''

GATED_HEAD = '''
from dataclasses import dataclass

import torch
from transformers import LlamaForSequenceClassification
from transformers.utils import ModelOutput


@dataclass
class GatedRewardOutput(ModelOutput):
    score: torch.FloatTensor | None = None


class TinyGatedReward(LlamaForSequenceClassification):
    """As ArmoRM: its own class on a Llama, the preference score in ``score``."""

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        logits = super().forward(input_ids=input_ids, attention_mask=attention_mask).logits
        return GatedRewardOutput(score=2.0 * logits + 1.0)
'''


@pytest.fixture(scope="session")
def own_code_reward_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model folder whose config and model classes are Python files it ships (``auto_map``);
    written by hand, so only transformers' remote-code loader ever imports them."""
    import torch
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("own-code-reward-model")
    tokenizer = build_tokenizer(folder)
    (folder / "tiny_own_reward.py").write_text(OWN_CONFIG_AND_MODEL)
    config = {
        "model_type": "tiny-own-reward",
        "architectures": ["TinyOwnRewardModel"],
        "auto_map": {
            "AutoConfig": "tiny_own_reward.TinyOwnRewardConfig",
            "AutoModelForSequenceClassification": "tiny_own_reward.TinyOwnRewardModel",
        },
        "vocab_size": len(tokenizer),
        "hidden_size": 8,
        "pad_token_id": tokenizer.pad_token_id,
    }
    (folder / "config.json").write_text(json.dumps(config))
    generator = torch.Generator().manual_seed(4)
    weights = {
        "embed.weight": torch.randn(len(tokenizer), 8, generator=generator),
        "head.weight": torch.randn(1, 8, generator=generator),
        "head.bias": torch.zeros(1),
    }
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


@pytest.fixture(scope="session")
def gated_reward_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """As ArmoRM: a Llama config transformers knows, whose ``auto_map`` names the model's
    own class for AutoModelForSequenceClassification."""
    import torch
    from transformers import LlamaForSequenceClassification

    folder = tmp_path_factory.mktemp("gated-reward-model")
    tokenizer = build_tokenizer(folder)
    config = tiny_llama_config(tokenizer)
    config.num_labels = 1
    torch.manual_seed(5)
    LlamaForSequenceClassification(config).save_pretrained(folder)
    (folder / "tiny_gated_reward.py").write_text(GATED_HEAD)
    saved = json.loads((folder / "config.json").read_text())
    saved["architectures"] = ["TinyGatedReward"]
    saved["auto_map"] = {"AutoModelForSequenceClassification": "tiny_gated_reward.TinyGatedReward"}
    (folder / "config.json").write_text(json.dumps(saved))
    return folder


@pytest.fixture
def private_hf_modules(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Code a model ships is copied under the test's temp root, not ~/.cache/huggingface."""
    import transformers.dynamic_module_utils as dynamic

    monkeypatch.setattr(
        dynamic, "HF_MODULES_CACHE", str(tmp_path_factory.getbasetemp() / "hf-modules")
    )
    monkeypatch.setattr(sys, "path", list(sys.path))
