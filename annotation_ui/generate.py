"""Candidate responses for ranking: k distinct samples per prompt from a model.

Sampling (temperature, top-p) rather than greedy decoding gives annotators real choices;
identical responses (after trimming whitespace) are dropped and the prompt is sampled again,
up to `max_rounds`, so each item has k different responses when the model can produce them.
A prompt with fewer than 2 distinct responses becomes no item (it is counted, not hidden).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from align.config.annotate import GenerateConfig
from align.data.conversation import Message, read_prompt
from align.generation import chat_prompt_ids, decode_responses, generate, settings_for
from annotation_ui.store import NewItem


@dataclass
class GenerationResult:
    items: list[NewItem]
    prompts: int  # distinct prompts (a repeated prompt is sampled once)
    short: int  # prompts that did not reach k (or pool_k) distinct responses (kept if >= 2)
    dropped: int  # prompts with fewer than 2 distinct responses


def distinct(responses: Sequence[str]) -> list[str]:
    """Responses in first-seen order without repeats (compared after trimming whitespace); empties dropped."""
    seen, out = set(), []
    for response in responses:
        key = response.strip()
        if key and key not in seen:
            seen.add(key)
            out.append(key)
    return out


def sample(model, tokenizer, conversations: Sequence[list[Message]], n: int, config: GenerateConfig) -> list[list[str]]:
    """n sampled responses per conversation (one batch)."""
    settings = settings_for(
        tokenizer,
        model,
        config.max_new_tokens,
        temperature=config.temperature,
        top_p=config.top_p,
        top_k=config.top_k,
        samples_per_prompt=n,
    )
    rollout = generate(model, [chat_prompt_ids(tokenizer, c) for c in conversations], settings)
    decoded = decode_responses(tokenizer, rollout)
    return [decoded[i * n : (i + 1) * n] for i in range(len(conversations))]


def distinct_prompts(records: Sequence[dict[str, Any]], source: str = "prompts") -> list[tuple[str, list[Message]]]:
    """(text, messages) of each distinct prompt, in first-seen order (a repeated prompt is sampled once)."""
    read = (read_prompt(r, source, i) for i, r in enumerate(records, start=1))
    return list({p.text: (p.text, p.messages) for p in read}.values())


def generate_items(
    model,
    tokenizer,
    records: Sequence[dict[str, Any]],
    config: GenerateConfig,
    source_model: str,
    source: str = "prompts",
    progress: bool = True,
) -> GenerationResult:
    """One item per prompt with up to k distinct sampled responses."""
    from tqdm import tqdm

    torch.manual_seed(config.seed)
    model.eval()
    prompts = distinct_prompts(records, source)
    items, short, dropped = [], 0, 0
    wanted = config.responses_sampled  # k, or the pool a selection picks k from
    for start in tqdm(range(0, len(prompts), config.batch_size), desc="sampling candidates", disable=not progress):
        batch = prompts[start : start + config.batch_size]
        found: list[list[str]] = [[] for _ in batch]
        for _ in range(config.max_rounds):
            todo = [i for i, f in enumerate(found) if len(f) < wanted]
            if not todo:
                break
            samples = sample(model, tokenizer, [batch[i][1] for i in todo], wanted, config)
            for i, new in zip(todo, samples):
                found[i] = distinct(found[i] + new)[:wanted]
        for (text, _), responses in zip(batch, found):
            if len(responses) < 2:
                dropped += 1
                continue
            short += len(responses) < wanted
            items.append(
                NewItem(
                    prompt=text,
                    responses=responses,
                    external_id=_item_id(text, source_model),
                    source_model=source_model,
                    meta={"temperature": config.temperature, "top_p": config.top_p, "seed": config.seed},
                )
            )
    return GenerationResult(items=items, prompts=len(prompts), short=short, dropped=dropped)


def _item_id(prompt: str, source_model: str) -> str:
    """Same prompt + model -> same id, so importing a regenerated file twice is caught as a duplicate."""
    return "gen-" + hashlib.sha256(f"{source_model}\n{prompt}".encode()).hexdigest()[:16]
