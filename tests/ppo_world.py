"""A self-made mini world for the PPO tests: a ~50k-parameter Llama policy with a BPE
tokenizer and chat template, a reward model on the same backbone (saved the way `align
reward` saves one), and prompt files. Built in about a second, independent of align.demo.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

WORDS = [
    "the",
    "a",
    "red",
    "blue",
    "green",
    "cat",
    "dog",
    "bird",
    "runs",
    "jumps",
    "sits",
    "on",
    "under",
    "big",
    "small",
    "what",
    "is",
    "color",
    "of",
    "sure",
    "yes",
    "no",
    "please",
    "answer",
]


def _sentences(n: int, seed: int) -> list[str]:
    g = torch.Generator().manual_seed(seed)
    return [
        " ".join(
            WORDS[i]
            for i in torch.randint(len(WORDS), (int(torch.randint(3, 9, (1,), generator=g)),), generator=g).tolist()
        )
        for _ in range(n)
    ]


def build_tokenizer(folder: Path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from align.models import DEFAULT_CHAT_TEMPLATE

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<pad>", "<unk>", "<eos>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(_sentences(400, 0) + ["<|user|>", "<|assistant|>", "<|system|>"], trainer)
    from tokenizers import decoders

    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", eos_token="<eos>")
    fast.chat_template = DEFAULT_CHAT_TEMPLATE
    fast.save_pretrained(folder)
    return fast


def build(root: Path, seed: int = 0) -> dict[str, Path]:
    """policy/, reward/final/ (an align-reward-style run dir), prompts_train.jsonl, prompts_test.jsonl."""
    from transformers import (
        LlamaConfig,
        LlamaForCausalLM,
        LlamaForSequenceClassification,
    )

    from align.reward.text import RewardMeta

    root = Path(root)
    policy_dir, reward_dir = root / "policy", root / "reward" / "final"
    if (root / "READY").exists():
        return _paths(root)
    tok = build_tokenizer(policy_dir)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=True,
    )
    policy = LlamaForCausalLM(config)
    policy.generation_config.eos_token_id = tok.eos_token_id
    policy.generation_config.pad_token_id = tok.pad_token_id
    policy.save_pretrained(policy_dir)
    torch.manual_seed(seed + 1)
    rm_config = LlamaConfig(**config.to_dict())
    rm_config.num_labels = 1
    rm = LlamaForSequenceClassification(rm_config)
    rm.load_state_dict({k: v for k, v in policy.state_dict().items() if not k.startswith("lm_head")}, strict=False)
    rm.config.pad_token_id = tok.pad_token_id
    rm.save_pretrained(reward_dir)
    tok.save_pretrained(reward_dir)
    RewardMeta(input_format="chat", max_length=128, base_model=str(policy_dir)).save(reward_dir)
    prompts = _sentences(80, 1)
    for name, rows in (("prompts_train.jsonl", prompts[:64]), ("prompts_test.jsonl", prompts[64:])):
        (root / name).write_text("".join(json.dumps({"prompt": p}) + "\n" for p in rows))
    (root / "READY").write_text("ok")
    return _paths(root)


def _paths(root: Path) -> dict[str, Path]:
    return {
        "policy": root / "policy",
        "reward": root / "reward",
        "train": root / "prompts_train.jsonl",
        "test": root / "prompts_test.jsonl",
    }


def config_dict(world: dict[str, Path], out: Path, **sections) -> dict:
    """A small, fast PPO config over the mini world (sections override defaults key by key)."""
    base = {
        "policy": {"name_or_path": str(world["policy"])},
        "reward_model": str(world["reward"]),
        "data": {"train": str(world["train"]), "test": str(world["test"])},
        "update": {"mode": "lora", "lora": {"r": 4, "alpha": 8, "dropout": 0.0}},
        "rollout": {"batch_size": 8, "max_new_tokens": 8, "max_prompt_length": 48},
        "ppo": {"epochs": 2, "minibatch_size": 4},
        "optim": {"policy_lr": 5e-3, "critic_lr": 1e-3},
        "schedule": {"steps": 3, "seed": 0, "save_steps": 1, "save_total_limit": 5, "sample_steps": 1},
        "eval": {"max_prompts": 8},
        "output": {"output_dir": str(out), "report_to": ["none"]},
    }
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return base
