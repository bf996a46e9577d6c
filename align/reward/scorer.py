"""Score (prompt, response) pairs with a trained reward model: the API of PPO and the eval.

    scorer = RewardScorer("runs/reward-.../")        # a run dir or its final/
    rewards = scorer.score(prompts, responses)       # (N,) float32 tensor on the CPU
    rewards, std = scorer.score(prompts, responses, with_std=True)   # an ensemble's spread too

The scorer owns its tokenizer and chat template (they come from the reward model's final/,
so a policy with a different tokenizer passes plain text). Scores do not depend on batch
composition or on the tokenizer's padding side: texts are encoded one by one, sorted by
length, right-padded internally, and the score is read at each text's own last token
([CLS] for encoders). With `normalize=True` (or the default saved at training time) scores
are (r - mean) / std, where mean/std are those of the training responses' rewards.
An ensemble reward model (`heads` > 1) scores with the mean of its heads; `with_std=True` adds
their standard deviation (zeros for one head), and `score_heads` gives every head's score.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from align.adapters import restore_adapters
from align.errors import AlignInputError
from align.generation import batches_by_length
from align.precision import autocast_forward
from align.reward.text import META_FILE, Prompt, RewardMeta, encode, pad_batch
from align.rundir import FINAL_DIR


def reward_model_dir(path: str | Path) -> Path:
    """A reward run dir means its final/; the folder must hold a saved reward model."""
    path = Path(path).expanduser()
    if (path / FINAL_DIR / META_FILE).is_file():
        return path / FINAL_DIR
    if (path / META_FILE).is_file():
        return path
    raise AlignInputError(
        f"{path} is not a reward model: expected {META_FILE} in it or in its final/ "
        "(give the run dir of `align reward` or its final/ folder)"
    )


class RewardScorer:
    """A trained reward model with its tokenizer, ready to score text in batches."""

    def __init__(
        self,
        run_dir: str | Path,
        device: str | torch.device | None = None,
        batch_size: int = 32,
        normalize: bool | None = None,
        dtype: torch.dtype | None = None,
    ):
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

        from align.reward.any_decoder import register_sequence_classifier

        folder = reward_model_dir(run_dir)
        register_sequence_classifier(AutoConfig.from_pretrained(folder))
        self.path = folder
        self.meta = RewardMeta.load(folder)
        self.normalize = self.meta.normalize if normalize is None else normalize
        self.batch_size = batch_size
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = restore_adapters(
            autocast_forward(AutoModelForSequenceClassification.from_pretrained(folder, dtype=dtype or torch.float32)),
            folder,
        )
        self.model.to(self.device).eval()
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

    @classmethod
    def from_model(cls, model, tokenizer, meta: RewardMeta, batch_size: int = 32) -> RewardScorer:
        """Wrap an in-memory model (during training and evaluation), without reading disk."""
        scorer = cls.__new__(cls)
        scorer.path, scorer.meta, scorer.normalize, scorer.batch_size = None, meta, False, batch_size
        scorer.model, scorer.tokenizer = model, tokenizer
        scorer.device = next(model.parameters()).device
        scorer.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        return scorer

    def encode(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[list[int]]:
        if len(prompts) != len(responses):
            raise ValueError(f"score() got {len(prompts)} prompts but {len(responses)} responses")
        return [
            encode(self.tokenizer, p, r, self.meta.input_format, self.meta.max_length)
            for p, r in zip(prompts, responses)
        ]

    @property
    def heads(self) -> int:
        return int(getattr(self.model.config, "num_labels", 1) or 1)

    @torch.no_grad()
    def score_heads(
        self, prompts: Sequence[Prompt], responses: Sequence[str], normalize: bool | None = None
    ) -> torch.Tensor:
        """Every head's reward, shape (N, heads), float32 on the CPU, in the order given."""
        sequences = self.encode(prompts, responses)
        rewards = torch.empty(len(sequences), self.heads, dtype=torch.float32)
        was_training = self.model.training
        self.model.eval()
        for index in batches_by_length([len(s) for s in sequences], self.batch_size):  # similar lengths together
            ids, mask = pad_batch([sequences[i] for i in index], self.pad_id)
            logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits  # (B, heads)
            rewards[index] = logits.float().cpu()
        if was_training:
            self.model.train()
        if self.normalize if normalize is None else normalize:
            rewards = (rewards - self.meta.reward_mean) / max(self.meta.reward_std, 1e-8)
        return rewards

    def score(
        self,
        prompts: Sequence[Prompt],
        responses: Sequence[str],
        normalize: bool | None = None,
        with_std: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Rewards, shape (N,), float32 on the CPU, in the order given (the heads' mean); with
        `with_std`, also the heads' standard deviation (N,), on the same (normalised or raw) scale."""
        rewards = self.score_heads(prompts, responses, normalize)
        mean = rewards.mean(dim=1)
        if not with_std:
            return mean
        return mean, rewards.std(dim=1, correction=0)

    __call__ = score
