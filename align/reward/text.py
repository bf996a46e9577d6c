"""How one (prompt, response) becomes the token ids a reward model reads.

Training and scoring both call `encode`, so a reward model always sees text rendered the
way it was trained on. Two input formats:

- "chat": decoder backbones (the SFT model). The prompt is a user turn (or a list of chat
  messages), the response the assistant turn, rendered by the tokenizer's chat template.
  The score is read at the last token, so over-long sequences lose their *start*.
- "pair": encoder backbones (MiniLM, BERT). Prompt and response are the tokenizer's text
  pair ([CLS] prompt [SEP] response [SEP]); the score is read at [CLS].
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import torch

Prompt = str | Sequence[dict]
InputFormat = Literal["chat", "pair"]
META_FILE = "reward_model.json"
"""Saved in final/ beside the weights: everything the scorer needs besides the model itself."""


@dataclass
class RewardMeta:
    """What a saved reward model needs to score text exactly as in training."""

    input_format: InputFormat
    max_length: int
    base_model: str = ""
    reward_mean: float = 0.0  # of the training responses' rewards, for normalisation
    reward_std: float = 1.0
    normalize: bool = False  # the scorer's default: return (r - mean) / std
    heads: int = 1  # reward heads (an ensemble when > 1): the reward is their mean
    extra: dict = field(default_factory=dict)

    def save(self, folder: Path) -> None:
        (Path(folder) / META_FILE).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path) -> RewardMeta:
        return cls(**json.loads((Path(folder) / META_FILE).read_text()))


def messages_for(prompt: Prompt, response: str) -> list[dict]:
    """Chat messages: a prompt string becomes one user turn; a message list is used as given."""
    head = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt]
    return head + [{"role": "assistant", "content": response}]


def prompt_text(prompt: Prompt) -> str:
    """A message list flattened to text, for the "pair" format."""
    if isinstance(prompt, str):
        return prompt
    return "\n".join(f"{m['role']}: {m['content']}" for m in prompt)


def encode(tokenizer, prompt: Prompt, response: str, input_format: InputFormat, max_length: int) -> list[int]:
    """Token ids of one (prompt, response), at most max_length long (see module docstring)."""
    if input_format == "chat":
        text = tokenizer.apply_chat_template(messages_for(prompt, response), tokenize=False)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids[-max_length:]  # keep the end: the score is read at the last token
    if input_format == "pair":
        return tokenizer(prompt_text(prompt), response, truncation="longest_first", max_length=max_length)["input_ids"]
    raise ValueError(f"unknown input_format {input_format!r}")


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad to the longest: (input_ids, attention_mask), both (B, T).

    Always right: a BERT-style model reads [CLS] at position 0 and absolute position
    embeddings shift under left padding, so the tokenizer's padding_side is ignored.
    """
    longest = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), longest), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(list(seq), dtype=torch.long)
        mask[row, : len(seq)] = 1
    return ids, mask
