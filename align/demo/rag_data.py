"""RAG data: a document per entity (seen and held-out) and QA sets on both.

qa_heldout can only be answered from rag/docs.jsonl (its entities are nowhere in the
pretraining corpus or the SFT data); qa_seen asks about facts the base model learnt in
pretraining, with the questions of the SFT test split. Questions use the SFT fact-QA
phrasings so a tuned model can answer them.
"""

from __future__ import annotations

import random

from align.demo.corpus import fact_sentence
from align.demo.kb import ATTRIBUTES, Entity
from align.demo.tasks import Item, fact_items


def doc_id(entity: Entity) -> str:
    return entity.name.lower()


def make_docs(entities: list[Entity]) -> list[dict]:
    """One short encyclopedia-style doc per entity: every fact in its canonical sentence."""
    return [{"id": doc_id(e), "text": " ".join(fact_sentence(e, a) for a in ATTRIBUTES)} for e in entities]


def qa_rows_from_items(items: list[Item]) -> list[dict]:
    return [{"question": i.prompt, "answers": [i.reference]} for i in items if i.task == "fact_qa"]


def make_heldout_items(heldout_entities: list[Entity], seed: int) -> list[Item]:
    """A fact-QA item for every (held-out entity, attribute) pair."""
    return fact_items(heldout_entities, random.Random(f"rag-{seed}"))
