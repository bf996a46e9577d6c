"""RAG data: a document per entity (seen and held-out) and QA sets on both.

qa_heldout can only be answered from rag/docs.jsonl (its entities are nowhere in the
pretraining corpus or the SFT data); qa_seen asks about facts the base model learnt in
pretraining, with the questions of the SFT test split. Questions use the SFT fact-QA
phrasings so a tuned model can answer them.
"""

from __future__ import annotations

import random

from align.demo.corpus import fact_sentence
from align.demo.kb import ATTRIBUTES, QA_ATTRIBUTES, Entity
from align.demo.tasks import Item, fact_items, fact_question


def doc_id(entity: Entity) -> str:
    return entity.name.lower()


def doc_text(entity: Entity) -> str:
    """A short encyclopedia-style doc: every fact in its canonical sentence."""
    return " ".join(fact_sentence(entity, a) for a in ATTRIBUTES)


def make_docs(entities: list[Entity]) -> list[dict]:
    """One doc per entity."""
    return [{"id": doc_id(e), "text": doc_text(e)} for e in entities]


def qa_rows_from_items(items: list[Item]) -> list[dict]:
    return [{"question": i.prompt, "answers": [i.reference]} for i in items if i.task == "fact_qa"]


def make_heldout_items(heldout_entities: list[Entity], seed: int) -> list[Item]:
    """A fact-QA item for every (held-out entity, attribute) pair."""
    return fact_items(heldout_entities, random.Random(f"rag-{seed}"))


def reading_items(fresh: list[Entity], seed: int) -> list[Item]:
    """SFT reading practice: a retrieved sentence, then a question on it, as `align eval` lays them out.

    configs/eval_demo.yaml retrieves the best sentence of the documents and puts it before the
    question. The entities are fresh (in no other file of the world), so the answer can only be
    read: SFT then teaches the model to use retrieved passages, as RAG needs.
    """
    rng = random.Random(f"reading-items-{seed}")
    items = []
    for entity in fresh:
        attribute = rng.choice(QA_ATTRIBUTES)
        prompt = f"{fact_sentence(entity, attribute)}\n\n{fact_question(entity, attribute, rng)}"
        items.append(Item("reading", prompt, "", entity.value(attribute), fact_sentence(entity, attribute)))
    return items
