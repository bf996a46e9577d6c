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
from align.errors import AlignInputError
from annotation_ui.store import NewItem

Message = dict[str, str]


@dataclass
class GenerationResult:
    items: list[NewItem]
    prompts: int  # distinct prompts (a repeated prompt is sampled once)
    short: int  # prompts that did not reach k distinct responses (kept if >= 2)
    dropped: int  # prompts with fewer than 2 distinct responses


def prompt_of(record: dict[str, Any], where: str) -> tuple[str, list[Message]]:
    """(prompt text shown to annotators, chat messages for the model) from one prompts-file row."""
    if isinstance(record.get("prompt"), str):
        text = record["prompt"]
        return text, [{"role": "user", "content": text}]
    if isinstance(record.get("instruction"), str):
        extra = record.get("input") or ""
        text = f"{record['instruction']}\n\n{extra}" if extra else record["instruction"]
        return text, [{"role": "user", "content": text}]
    messages = record.get("messages")
    if isinstance(messages, list) and messages:
        while messages and messages[-1].get("role") == "assistant":
            messages = messages[:-1]
        users = [m for m in messages if m.get("role") == "user"]
        if users:
            return str(users[-1]["content"]), [{"role": str(m["role"]), "content": str(m["content"])} for m in messages]
    raise AlignInputError(f"{where}: needs 'prompt', 'instruction' (+'input') or 'messages' with a user turn "
                          f"(it has {', '.join(sorted(record)) or 'nothing'})")


def distinct(responses: Sequence[str]) -> list[str]:
    """Responses in first-seen order without repeats (compared after trimming whitespace); empties dropped."""
    seen, out = set(), []
    for response in responses:
        key = response.strip()
        if key and key not in seen:
            seen.add(key)
            out.append(key)
    return out


@torch.no_grad()
def sample(model, tokenizer, conversations: Sequence[list[Message]], n: int, config: GenerateConfig) -> list[list[str]]:
    """n sampled responses per conversation (left-padded batch)."""
    device = next(model.parameters()).device
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        texts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        out = model.generate(**enc, do_sample=True, temperature=config.temperature, top_p=config.top_p,
                             max_new_tokens=config.max_new_tokens, num_return_sequences=n,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    finally:
        tokenizer.padding_side = side
    decoded = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    return [decoded[i * n:(i + 1) * n] for i in range(len(conversations))]


def generate_items(model, tokenizer, records: Sequence[dict[str, Any]], config: GenerateConfig, source_model: str,
                   source: str = "prompts", progress: bool = True) -> GenerationResult:
    """One item per prompt with up to k distinct sampled responses."""
    from tqdm import tqdm

    torch.manual_seed(config.seed)
    model.eval()
    prompts = list({text: (text, conv) for text, conv in
                    (prompt_of(r, f"{source}: record {i}") for i, r in enumerate(records, start=1))}.values())
    items, short, dropped = [], 0, 0
    for start in tqdm(range(0, len(prompts), config.batch_size), desc="sampling candidates", disable=not progress):
        batch = prompts[start:start + config.batch_size]
        found: list[list[str]] = [[] for _ in batch]
        for _ in range(config.max_rounds):
            todo = [i for i, f in enumerate(found) if len(f) < config.k]
            if not todo:
                break
            samples = sample(model, tokenizer, [batch[i][1] for i in todo], config.k, config)
            for i, new in zip(todo, samples):
                found[i] = distinct(found[i] + new)[: config.k]
        for (text, _), responses in zip(batch, found):
            if len(responses) < 2:
                dropped += 1
                continue
            short += len(responses) < config.k
            items.append(NewItem(prompt=text, responses=responses, external_id=_item_id(text, source_model),
                                 source_model=source_model,
                                 meta={"temperature": config.temperature, "top_p": config.top_p, "seed": config.seed}))
    return GenerationResult(items=items, prompts=len(prompts), short=short, dropped=dropped)


def _item_id(prompt: str, source_model: str) -> str:
    """Same prompt + model -> same id, so importing a regenerated file twice is caught as a duplicate."""
    return "gen-" + hashlib.sha256(f"{source_model}\n{prompt}".encode()).hexdigest()[:16]
