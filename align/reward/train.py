"""Pairs -> tokenized datasets, and TRL's RewardTrainer with our Bradley-Terry loss.

Pairs are tokenized here with `text.encode` (the same function the scorer uses), so TRL
skips its own preprocessing; TRL's collator stacks chosen then rejected sequences into one
batch of 2B, and `compute_loss` splits the rewards back.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from align.reward.loss import bradley_terry_loss
from align.reward.pairs import Pair
from align.reward.text import RewardMeta, encode


@dataclass
class TokenizedPairs:
    chosen_ids: list[list[int]] = field(default_factory=list)
    rejected_ids: list[list[int]] = field(default_factory=list)
    margin: list[float] = field(default_factory=list)
    truncated: int = 0  # sequences cut to max_length

    def __len__(self) -> int:
        return len(self.chosen_ids)

    def to_dataset(self):
        from datasets import Dataset

        return Dataset.from_dict(
            {"chosen_ids": self.chosen_ids, "rejected_ids": self.rejected_ids, "margin": self.margin}
        )

    def summary(self) -> dict[str, Any]:
        lengths = [len(x) for x in self.chosen_ids + self.rejected_ids] or [0]
        return {
            "pairs": len(self),
            "truncated_sequences": self.truncated,
            "max_tokens": max(lengths),
            "mean_tokens": round(sum(lengths) / len(lengths), 1),
        }


def tokenize_pairs(pairs: Sequence[Pair], tokenizer, meta: RewardMeta) -> TokenizedPairs:
    """Encode every pair once per side; each distinct (prompt, response) is encoded once."""
    cache: dict[tuple[str, str], list[int]] = {}
    out = TokenizedPairs()

    def ids(pair: Pair, response: str) -> list[int]:
        key = (pair.group, response)
        if key not in cache:
            full = encode(tokenizer, pair.prompt, response, meta.input_format, 10**9)
            kept = (
                encode(tokenizer, pair.prompt, response, meta.input_format, meta.max_length)
                if len(full) > meta.max_length
                else full
            )
            out.truncated += len(kept) < len(full)
            cache[key] = kept
        return cache[key]

    for pair in pairs:
        out.chosen_ids.append(ids(pair, pair.chosen))
        out.rejected_ids.append(ids(pair, pair.rejected))
        out.margin.append(float(pair.margin))
    return out


def reward_trainer_class():
    """TRL's RewardTrainer with our loss, and metrics gathered as 1-d tensors.

    (Gathering 0-d tensors, as TRL does for accuracy/margin, fails on CPU/gloo.)
    Built lazily so importing this module does not import TRL.
    """
    from trl import RewardTrainer

    class BradleyTerryTrainer(RewardTrainer):
        center_coef: float | None = None

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            mode = "train" if self.model.training else "eval"
            margin = inputs.get("margin")
            outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], use_cache=False)
            chosen, rejected = outputs.logits.squeeze(-1).chunk(2)  # (B,), (B,)
            loss = bradley_terry_loss(chosen, rejected, margin, self.center_coef)
            with torch.no_grad():
                diff = self.accelerator.gather_for_metrics((chosen - rejected).detach().float().reshape(-1))
                rewards = self.accelerator.gather_for_metrics(outputs.logits.detach().float().reshape(-1))
                self._metrics[mode]["accuracy"].append((diff > 0).float().mean().item())
                self._metrics[mode]["margin"].append(diff.mean().item())
                self._metrics[mode]["mean_reward"].append(rewards.mean().item())
            return (loss, outputs) if return_outputs else loss

    return BradleyTerryTrainer


def reward_arguments(config, output_dir: Path, dtype: torch.dtype, has_eval: bool):
    """TRL RewardConfig from our RewardConfig (shared HF arguments from align.trainer_builders)."""
    from trl import RewardConfig as TRLRewardConfig

    from align.trainer_builders import training_arguments_kwargs

    return TRLRewardConfig(
        **training_arguments_kwargs(config.training, output_dir, dtype, config.deepspeed, has_eval),
        max_length=None,  # our tokenization already truncated (and counted) long sequences
        disable_dropout=True,  # dropout makes the two sides of a pair see different networks
        center_rewards_coefficient=None,  # applied in our loss instead
        dataset_num_proc=None,
    )


def build_trainer(
    config,
    model,
    tokenizer,
    train: TokenizedPairs,
    validation: TokenizedPairs | None,
    callbacks: Sequence[Any],
    output_dir: Path,
):
    dtype = next(p for p in model.parameters()).dtype
    trainer_cls = reward_trainer_class()
    trainer = trainer_cls(
        model=model,
        args=reward_arguments(config, output_dir, dtype, has_eval=validation is not None and len(validation) > 0),
        train_dataset=train.to_dataset(),
        eval_dataset=validation.to_dataset() if validation is not None and len(validation) > 0 else None,
        processing_class=tokenizer,
        callbacks=list(callbacks),
    )
    trainer.center_coef = config.center_rewards_coef
    trainer._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
    return trainer
