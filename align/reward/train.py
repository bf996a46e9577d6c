"""Pairs or whole rankings -> tokenized datasets, and TRL's RewardTrainer with our losses.

Responses are tokenized here with `text.encode` (the same function the scorer uses), so TRL
skips its own preprocessing.
- loss bradley_terry: TRL's collator stacks chosen then rejected sequences into one batch of
  2B, and `compute_loss` splits the rewards back;
- loss plackett_luce: each example is one ranking of k responses (k may differ); our collator
  stacks every response of the batch's rankings, and `compute_loss` puts the rewards back in a
  (rankings, k_max) grid with a mask for the Plackett-Luce loss.
With `heads` > 1 the model's logits are (sequences, heads); each head's loss weighs the examples
by that head's bootstrap counts (`add_bootstrap`), and the loss is the mean over heads.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from align.quiet import one_progress_bar
from align.reward.loss import bootstrap_weights, bradley_terry_loss, head_weights, plackett_luce_loss
from align.reward.pairs import Pair, Ranking
from align.reward.text import RewardMeta, encode


@dataclass
class TokenizedPairs:
    chosen_ids: list[list[int]] = field(default_factory=list)
    rejected_ids: list[list[int]] = field(default_factory=list)
    margin: list[float] = field(default_factory=list)
    weight: list[float] = field(default_factory=list)  # per pair: its annotator's weight (1.0 unweighted)
    truncated: int = 0  # sequences cut to max_length
    head_weights: list[list[float]] = field(default_factory=list)  # per pair: each head's bootstrap count

    def __len__(self) -> int:
        return len(self.chosen_ids)

    def to_dataset(self):
        from datasets import Dataset

        columns = {
            "chosen_ids": self.chosen_ids,
            "rejected_ids": self.rejected_ids,
            "margin": self.margin,
            "weight": self.weight,
        }
        return Dataset.from_dict(columns | ({"head_weights": self.head_weights} if self.head_weights else {}))

    def summary(self) -> dict[str, Any]:
        lengths = [len(x) for x in self.chosen_ids + self.rejected_ids] or [0]
        return {
            "pairs": len(self),
            "truncated_sequences": self.truncated,
            "max_tokens": max(lengths),
            "mean_tokens": round(sum(lengths) / len(lengths), 1),
        }


@dataclass
class TokenizedRankings:
    """One example per ranking: every response's ids and its rank (1 = best, ties equal)."""

    response_ids: list[list[list[int]]] = field(default_factory=list)
    ranks: list[list[float]] = field(default_factory=list)
    weight: list[float] = field(default_factory=list)
    truncated: int = 0
    head_weights: list[list[float]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ranks)

    def to_dataset(self):
        from datasets import Dataset

        columns = {"response_ids": self.response_ids, "ranks": self.ranks, "weight": self.weight}
        return Dataset.from_dict(columns | ({"head_weights": self.head_weights} if self.head_weights else {}))

    def summary(self) -> dict[str, Any]:
        lengths = [len(x) for group in self.response_ids for x in group] or [0]
        return {
            "rankings": len(self),
            "responses": sum(len(g) for g in self.response_ids),
            "truncated_sequences": self.truncated,
            "max_tokens": max(lengths),
            "mean_tokens": round(sum(lengths) / len(lengths), 1),
        }


class _Encoder:
    """Encodes (prompt, response) once, truncated to meta.max_length, counting truncations."""

    def __init__(self, tokenizer, meta: RewardMeta, counts):
        self.tokenizer, self.meta, self.counts = tokenizer, meta, counts
        self.cache: dict[tuple[str, str], list[int]] = {}

    def __call__(self, group: str, prompt, response: str) -> list[int]:
        key = (group, response)
        if key not in self.cache:
            full = encode(self.tokenizer, prompt, response, self.meta.input_format, 10**9)
            kept = (
                encode(self.tokenizer, prompt, response, self.meta.input_format, self.meta.max_length)
                if len(full) > self.meta.max_length
                else full
            )
            self.counts.truncated += len(kept) < len(full)
            self.cache[key] = kept
        return self.cache[key]


def tokenize_pairs(
    pairs: Sequence[Pair], tokenizer, meta: RewardMeta, weights: dict[str, float] | None = None
) -> TokenizedPairs:
    """Encode every pair once per side; each distinct (prompt, response) is encoded once.
    `weights` {annotator: weight} weigh each pair by its annotator (others weigh 1)."""
    out = TokenizedPairs()
    ids = _Encoder(tokenizer, meta, out)
    for pair in pairs:
        out.chosen_ids.append(ids(pair.group, pair.prompt, pair.chosen))
        out.rejected_ids.append(ids(pair.group, pair.prompt, pair.rejected))
        out.margin.append(float(pair.margin))
        out.weight.append(float((weights or {}).get(pair.annotator, 1.0)))
    return out


def tokenize_rankings(
    rankings: Sequence[Ranking], tokenizer, meta: RewardMeta, weights: dict[str, float] | None = None
) -> TokenizedRankings:
    """Encode every ranking's responses (each distinct (prompt, response) once); weights as tokenize_pairs."""
    out = TokenizedRankings()
    ids = _Encoder(tokenizer, meta, out)
    for ranking in rankings:
        out.response_ids.append([ids(ranking.group, ranking.prompt, r) for r in ranking.responses])
        out.ranks.append([float(x) for x in ranking.ranks])
        out.weight.append(float((weights or {}).get(ranking.annotator, 1.0)))
    return out


def add_bootstrap(tokenized: TokenizedPairs | TokenizedRankings, heads: int, seed: int) -> None:
    """Give each example a bootstrap count per head (nothing for a single head)."""
    if heads > 1:
        tokenized.head_weights = bootstrap_weights(len(tokenized), heads, seed).tolist()


def _head_weights(examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    return (
        {"head_weights": torch.tensor([e["head_weights"] for e in examples])} if "head_weights" in examples[0] else {}
    )


def _padded(sequences: list[list[int]], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and their attention mask."""
    tensors = [torch.tensor(ids) for ids in sequences]
    input_ids = torch.nn.utils.rnn.pad_sequence(tensors, batch_first=True, padding_value=pad_token_id)
    mask = torch.nn.utils.rnn.pad_sequence(
        [torch.ones(len(t), dtype=torch.long) for t in tensors], batch_first=True, padding_value=0
    )
    return input_ids, mask


@dataclass
class PairCollator:
    """Pairs -> chosen then rejected sequences in one right-padded batch of 2B (as TRL's collator
    does), with each pair's margin and weight."""

    pad_token_id: int

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        sequences = [e["chosen_ids"] for e in examples] + [e["rejected_ids"] for e in examples]
        input_ids, attention_mask = _padded(sequences, self.pad_token_id)
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "margin": torch.tensor([float(e.get("margin", 0.0)) for e in examples]),
            "weight": torch.tensor([float(e.get("weight", 1.0)) for e in examples]),
            **_head_weights(examples),
        }


@dataclass
class RankingCollator:
    """Rankings -> every response right-padded in one (responses, T) batch, plus ranks and a
    mask on a (rankings, k_max) grid (row-major, so rewards fill it in batch order)."""

    pad_token_id: int

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        input_ids, attention_mask = _padded(
            [ids for example in examples for ids in example["response_ids"]], self.pad_token_id
        )
        k_max = max(len(example["ranks"]) for example in examples)
        ranks = torch.zeros(len(examples), k_max)
        mask = torch.zeros(len(examples), k_max, dtype=torch.bool)
        for row, example in enumerate(examples):
            ranks[row, : len(example["ranks"])] = torch.tensor(example["ranks"])
            mask[row, : len(example["ranks"])] = True
        weight = torch.tensor([float(e.get("weight", 1.0)) for e in examples])
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "ranks": ranks,
            "ranking_mask": mask,
            "weight": weight,
            **_head_weights(examples),
        }


def decided_pair_accuracy(grid: torch.Tensor, ranks: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per decided pair (different ranks) of each ranking: 1 where the better-ranked response got
    the higher reward. 1-d, so it gathers across processes."""
    better = (ranks.unsqueeze(2) < ranks.unsqueeze(1)) & mask.unsqueeze(2) & mask.unsqueeze(1)
    right = grid.unsqueeze(2) > grid.unsqueeze(1)
    return right[better].float()


def reward_trainer_class():
    """TRL's RewardTrainer with our loss, and metrics gathered as 1-d tensors.

    (Gathering 0-d tensors, as TRL does for accuracy/margin, fails on CPU/gloo.)
    Built lazily so importing this module does not import TRL.
    """
    from trl import RewardTrainer

    class BradleyTerryTrainer(RewardTrainer):
        center_coef: float | None = None

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            if "response_ids" in dataset.column_names:  # rankings, tokenized by tokenize_rankings
                return dataset
            return super()._prepare_dataset(dataset, processing_class, args, dataset_name)

        def _set_signature_columns_if_needed(self):
            if self._signature_columns is None:
                pair_columns = ["chosen_ids", "rejected_ids", "margin", "weight"]
                self._signature_columns = [*pair_columns, "response_ids", "ranks", "head_weights"]

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if "ranks" in inputs:
                return self._listwise_loss(model, inputs, return_outputs)
            mode = "train" if self.model.training else "eval"
            margin = inputs.get("margin")
            outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], use_cache=False)
            chosen, rejected = outputs.logits.float().chunk(2)  # (B, heads) each
            bootstrap = inputs.get("head_weights")
            losses = [
                bradley_terry_loss(
                    chosen[:, h],
                    rejected[:, h],
                    margin,
                    self.center_coef,
                    head_weights(inputs.get("weight"), bootstrap, h),
                )
                for h in range(chosen.shape[1])
            ]
            loss = torch.stack(losses).mean()
            with torch.no_grad():
                diff = (chosen - rejected).mean(1).detach()  # the ensemble's mean reward
                diff = self.accelerator.gather_for_metrics(diff.reshape(-1))
                rewards = self.accelerator.gather_for_metrics(outputs.logits.detach().float().mean(1).reshape(-1))
                self._metrics[mode]["accuracy"].append((diff > 0).float().mean().item())
                self._metrics[mode]["margin"].append(diff.mean().item())
                self._metrics[mode]["mean_reward"].append(rewards.mean().item())
            return (loss, outputs) if return_outputs else loss

        def _listwise_loss(self, model, inputs, return_outputs):
            mode = "train" if self.model.training else "eval"
            outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], use_cache=False)
            rewards = outputs.logits.float()  # (responses, heads)
            mask = inputs["ranking_mask"]
            bootstrap = inputs.get("head_weights")
            losses = []
            for h in range(rewards.shape[1]):
                grid = rewards.new_zeros(mask.shape).masked_scatter(mask, rewards[:, h])
                loss = plackett_luce_loss(grid, inputs["ranks"], mask, head_weights(inputs.get("weight"), bootstrap, h))
                if self.center_coef:  # Bradley-Terry's (r_c + r_r)^2 at k = 2: (2 x the ranking's mean)^2
                    means = grid.sum(1) / mask.sum(1)
                    loss = loss + self.center_coef * ((2 * means) ** 2).mean()
                losses.append(loss)
            loss = torch.stack(losses).mean()
            grid = rewards.new_zeros(mask.shape).masked_scatter(mask, rewards.mean(1))  # the ensemble's mean
            with torch.no_grad():
                right = self.accelerator.gather_for_metrics(decided_pair_accuracy(grid.detach(), inputs["ranks"], mask))
                gathered = self.accelerator.gather_for_metrics(rewards.detach().mean(1).reshape(-1))
                if right.numel():
                    self._metrics[mode]["accuracy"].append(right.mean().item())
                self._metrics[mode]["mean_reward"].append(gathered.mean().item())
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
    train: TokenizedPairs | TokenizedRankings,
    validation: TokenizedPairs | TokenizedRankings | None,
    callbacks: Sequence[Any],
    output_dir: Path,
):
    dtype = next(p for p in model.parameters()).dtype
    trainer_cls = reward_trainer_class()
    heads = model.config.num_labels
    model.config.num_labels = 1  # TRL insists on one scalar; our compute_loss reads every head of an ensemble
    trainer = trainer_cls(
        model=model,
        args=reward_arguments(config, output_dir, dtype, has_eval=validation is not None and len(validation) > 0),
        train_dataset=train.to_dataset(),
        eval_dataset=validation.to_dataset() if validation is not None and len(validation) > 0 else None,
        processing_class=tokenizer,
        callbacks=list(callbacks),
    )
    model.config.num_labels = heads
    one_progress_bar(trainer)
    # ours (weights, whole rankings), made once TRL has given the tokenizer a pad token if it had none
    collator = RankingCollator if isinstance(train, TokenizedRankings) else PairCollator
    trainer.data_collator = collator(trainer.processing_class.pad_token_id)
    trainer.center_coef = config.center_rewards_coef
    trainer._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
    return trainer
