"""Greedy generation with any causal LM (base model, SFT or PPO run dir, PEFT adapter).

Prompts are rendered with the chat template (one user turn) or passed raw; batches are
left-padded; a prompt longer than the model's context keeps its end (the question) and loses
the start of the passages, and is counted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

from tqdm.auto import tqdm

from align.config.common import ModelConfig
from align.config.rag import GenerationConfig
from align.generation import (
    batches_by_length,
    chat_prompt_ids,
    decode_responses,
    generate,
    settings_for,
    text_prompt_ids,
)
from align.models import context_length, load_causal_lm, load_tokenizer


@dataclass(frozen=True)
class Generation:
    text: str
    seconds: float  # wall time of its batch divided by the batch size
    prompt_tokens: int
    truncated: bool


class Generator:
    """A loaded model + tokenizer that answers prompts."""

    def __init__(self, model_config: ModelConfig, generation: GenerationConfig, chat: bool = True):
        self.name_or_path = model_config.name_or_path
        self.settings = generation
        self.chat = chat
        self.tokenizer = load_tokenizer(model_config)
        self.model = load_causal_lm(model_config)
        self.model.eval()
        self.device = next(self.model.parameters()).device
        limit = context_length(self.model) or 10**9
        self.max_prompt_tokens = max(1, limit - generation.max_new_tokens)
        self.greedy = settings_for(self.tokenizer, self.model, generation.max_new_tokens, do_sample=False)

    def encode(self, user_text: str) -> tuple[list[int], bool]:
        """Token ids of one prompt (left-truncated to fit the context) and whether it was cut."""
        if self.chat:
            ids = chat_prompt_ids(self.tokenizer, [{"role": "user", "content": user_text}])
        else:
            ids = text_prompt_ids(self.tokenizer, user_text)
        if len(ids) <= self.max_prompt_tokens:
            return ids, False
        return ids[-self.max_prompt_tokens :], True

    def generate(self, prompts: Sequence[str], progress: bool = False, desc: str = "generating") -> list[Generation]:
        """Answers in the prompts' order; batches are cut from the prompts sorted by token length
        (a question with five retrieved passages does not pad one without)."""
        encoded = [self.encode(p) for p in prompts]
        results: list[Generation | None] = [None] * len(encoded)
        batches = batches_by_length([len(ids) for ids, _ in encoded], self.settings.batch_size)
        for chunk in tqdm(batches, desc=desc, disable=not progress, leave=False):
            for i, generation in zip(chunk, self._batch([encoded[i] for i in chunk])):
                results[i] = generation
        return results

    def _batch(self, encoded: Sequence[tuple[list[int], bool]]) -> list[Generation]:
        started = time.perf_counter()
        texts = decode_responses(self.tokenizer, generate(self.model, [ids for ids, _ in encoded], self.greedy))
        seconds = (time.perf_counter() - started) / len(encoded)
        return [
            Generation(clean_answer(text, self.settings.first_line_only), seconds, len(ids), cut)
            for text, (ids, cut) in zip(texts, encoded)
        ]


def clean_answer(text: str, first_line_only: bool) -> str:
    text = text.strip()
    return text.split("\n", 1)[0].strip() if first_line_only else text
