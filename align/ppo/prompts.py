"""PPO prompts: read records, render them with the policy's chat template, tokenize, and
serve them in a seeded, resumable order.

Records are read by align.data.conversation.read_prompt: {"prompt"}, {"messages"} or alpaca
{"instruction", "input"?}; a full example's answer is dropped, so SFT data can be reused.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch

from align.data.conversation import read_prompt
from align.data.io import read_records
from align.errors import AlignInputError
from align.generation import chat_prompt_ids


@dataclass
class TokenizedPrompt:
    text: str  # the user's request as plain text (what the reward model and gold scorer see)
    ids: list[int]  # chat-templated policy tokens, ending in the assistant header
    record: dict = field(default_factory=dict)  # the record's columns (a rule's reference, a function's inputs)
    messages: list[dict] = field(
        default_factory=list
    )  # the conversation `ids` render (a multi-turn rollout re-renders it with tools)


def load_prompts(
    source: str, tokenizer, max_prompt_length: int, columns: dict[str, str], limit: int | None = None, fmt: str = "auto"
) -> list[TokenizedPrompt]:
    """Tokenized prompts; ones longer than `max_prompt_length` are skipped with a warning."""
    records = read_records(source, columns=columns)
    if limit is not None:
        records = records[:limit]
    prompts, too_long = [], 0
    for n, record in enumerate(records, start=1):
        prompt = read_prompt(record, source, n, fmt)
        ids = chat_prompt_ids(tokenizer, prompt.messages)
        if len(ids) > max_prompt_length:
            too_long += 1
            continue
        prompts.append(TokenizedPrompt(prompt.text, ids, dict(record), list(prompt.messages)))
    if too_long:
        warnings.warn(
            f"{source}: skipped {too_long} of {len(records)} prompts longer than rollout.max_prompt_length={max_prompt_length} tokens",
            stacklevel=2,
        )
    if not prompts:
        raise AlignInputError(
            f"{source}: no usable prompts ({too_long} of {len(records)} longer than rollout.max_prompt_length={max_prompt_length}); "
            "raise rollout.max_prompt_length (within the model's context) or shorten the prompts"
        )
    return prompts


class PromptSampler:
    """Batches of prompts in a fresh seeded permutation per pass; `state_dict` is the data position."""

    def __init__(self, n: int, batch_size: int, seed: int):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.epoch, self.cursor = 0, 0

    def _order(self) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return torch.randperm(self.n, generator=generator).tolist()

    def next_batch(self) -> list[int]:
        batch: list[int] = []
        while len(batch) < self.batch_size:
            order = self._order()
            take = order[self.cursor : self.cursor + self.batch_size - len(batch)]
            batch += take
            self.cursor += len(take)
            if self.cursor >= self.n:
                self.epoch, self.cursor = self.epoch + 1, 0
        return batch

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "cursor": self.cursor}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.cursor = int(state["epoch"]), int(state["cursor"])
