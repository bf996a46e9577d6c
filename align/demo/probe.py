"""Probes of what a world's base model knows and does, for build checks and stage reports.

fact_completion_rate: does the model complete "The favorite color of Zorbin is" with the
fact (knowledge from pretraining)? instruction_answer_rate: asked the same fact as a chat
question, does it answer (instruction following, which the base model should lack)?
doc_copy_rate: given a held-out entity's rag document, does it complete the same prefix
from the document (reading from context, which RAG relies on)?
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from align.demo.corpus import completion_prompt
from align.demo.gold import Reference, is_correct, words
from align.demo.kb import ATTRIBUTES, QA_ATTRIBUTES, Entity
from align.demo.rag_data import doc_id
from align.demo.tasks import FACT_QUESTIONS
from align.generation import chat_prompt_ids, generate_texts, settings_for, text_prompt_ids

Fact = tuple[Entity, str]  # (entity, attribute)


def load_entities(world_path: str | Path) -> list[Entity]:
    with open(Path(world_path) / "kb.jsonl", encoding="utf-8") as f:
        return [Entity(**json.loads(line)) for line in f]


def seen_facts(
    entities: list[Entity], attributes: tuple[str, ...], n: int | None, held_out: bool = False
) -> list[Fact]:
    """All (seen entity, attribute) pairs, or a fixed random sample of n of them (or held-out ones)."""
    facts = [(e, a) for e in entities if e.held_out == held_out for a in attributes]
    return facts if n is None or n >= len(facts) else random.Random(0).sample(facts, n)


def greedy_continuations(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    max_new_tokens: int,
    chat: bool = False,
    batch_size: int = 64,
) -> list[str]:
    """Greedy continuation of each prompt (plain text, or one user turn of the chat template)."""
    ids = [
        chat_prompt_ids(tokenizer, [{"role": "user", "content": p}]) if chat else text_prompt_ids(tokenizer, p)
        for p in prompts
    ]
    settings = settings_for(tokenizer, model, max_new_tokens, do_sample=False)
    return generate_texts(model, tokenizer, ids, settings, batch_size)


def completion_rate(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, facts: list[Fact], contexts: list[str] | None = None
) -> float:
    """Fraction of facts whose canonical sentence prefix (after its context, if given) is
    completed by the right value."""
    prompts = [completion_prompt(e, a) for e, a in facts]
    if contexts is not None:
        prompts = [f"{c} {p}" for c, p in zip(contexts, prompts, strict=True)]
    continuations = greedy_continuations(model, tokenizer, prompts, max_new_tokens=4)
    hits = [words(c)[:1] == [e.value(a)] for (e, a), c in zip(facts, continuations, strict=True)]
    return sum(hits) / max(1, len(hits))


def answer_rate(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, facts: list[Fact]
) -> tuple[float, list[str]]:
    """Fraction of chat-template fact questions answered correctly (gold.is_correct), and the replies."""
    prompts = [FACT_QUESTIONS[a][0].format(n=e.name) for e, a in facts]
    replies = greedy_continuations(model, tokenizer, prompts, max_new_tokens=16, chat=True)
    hits = [is_correct(r, Reference(e.value(a), "fact_qa")) for (e, a), r in zip(facts, replies, strict=True)]
    return sum(hits) / max(1, len(hits)), replies


def _load(world_path: str | Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, list[Entity]]:
    path = Path(world_path)
    model = AutoModelForCausalLM.from_pretrained(path / "model").eval()
    return model, AutoTokenizer.from_pretrained(path / "model"), load_entities(path)


def fact_completion_rate(world_path: str | Path, n: int | None = None) -> float:
    """Share of seen facts (all attributes, or a fixed sample of n) the base model completes greedily."""
    model, tokenizer, entities = _load(world_path)
    return completion_rate(model, tokenizer, seen_facts(entities, ATTRIBUTES, n))


def instruction_answer_rate(world_path: str | Path, n: int | None = None) -> float:
    """Share of seen facts the base model answers when asked as a chat question (should be low)."""
    model, tokenizer, entities = _load(world_path)
    return answer_rate(model, tokenizer, seen_facts(entities, QA_ATTRIBUTES, n))[0]


def doc_copy_rate(world_path: str | Path, n: int | None = None) -> float:
    """Share of held-out facts the base model completes right after the entity's rag document."""
    model, tokenizer, entities = _load(world_path)
    with open(Path(world_path) / "rag" / "docs.jsonl", encoding="utf-8") as f:
        docs = {row["id"]: row["text"] for row in map(json.loads, f)}
    facts = seen_facts(entities, ATTRIBUTES, n, held_out=True)
    return completion_rate(model, tokenizer, facts, [docs[doc_id(e)] for e, _ in facts])
