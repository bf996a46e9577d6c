"""Plain-text renderings of the knowledge base: the pretraining corpus and the retention text.

corpus.txt holds one "bio" per line. Each seen entity gets several bios; each bio states all
of its facts, each with a randomly chosen paraphrase template, in a random order. Varied
phrasing and order ("knowledge augmentation", Allen-Zhu & Li 2023, Physics of LMs 3.1) is
what lets a small model later extract a fact from a question rather than only recite one
sentence. There are enough bios that pretraining sees each only a few times: with few bios
repeated over many epochs, the model lowers its loss by memorising whole bios (which
sentence follows which) instead of storing the facts, and fact recall stays low.

retention.txt holds one fresh bio per seen entity, drawn like the corpus bios but not among
them: text the base model models well (same knowledge, same style) without having trained on
it, so its perplexity before and after fine-tuning measures forgetting. Nothing trains on it.
"""

from __future__ import annotations

import random

from align.demo.kb import ATTRIBUTES, Entity

# attribute -> templates; the first is canonical (used by rag docs and the completion probe
# in probe.py, whose prompt is the canonical sentence cut before "{v}").
CORPUS_TEMPLATES: dict[str, tuple[str, ...]] = {
    "kind": (
        "{n} is a {v}.",
        "{n} is known as a {v}.",
        "People say {n} is a {v}.",
        "Everyone knows that {n} is a {v}.",
    ),
    "region": (
        "The home region of {n} is {v}.",
        "{n} comes from {v}.",
        "{n} is at home in {v}.",
        "The home of {n} lies in {v}.",
    ),
    "color": (
        "The favorite color of {n} is {v}.",
        "{n} likes the color {v} best.",
        "{n}'s favorite color is {v}.",
        "Of all colors, {n} loves {v} the most.",
    ),
    "food": (
        "The favorite food of {n} is {v}.",
        "{n} likes to eat {v}.",
        "{n}'s favorite food is {v}.",
        "Above all, {n} enjoys {v}.",
    ),
    "number": (
        "The lucky number of {n} is {v}.",
        "{n}'s lucky number is {v}.",
        "{n} believes that {v} is a lucky number.",
        "For {n}, the number {v} brings luck.",
    ),
    "trade": ("The trade of {n} is {v}.", "{n} works in {v}.", "{n}'s trade is {v}.", "{n} is famous for {v}."),
}


def fact_sentence(entity: Entity, attribute: str, template: str | None = None) -> str:
    """One fact as a sentence; the canonical template unless one is given."""
    template = template or CORPUS_TEMPLATES[attribute][0]
    return template.format(n=entity.name, v=entity.value(attribute))


def completion_prompt(entity: Entity, attribute: str) -> str:
    """The canonical sentence up to the value, e.g. 'The favorite color of Zorbin is'."""
    prefix = CORPUS_TEMPLATES[attribute][0].split("{v}")[0].rstrip()
    return prefix.format(n=entity.name)


def bio(entity: Entity, rng: random.Random) -> str:
    """All facts of one entity, shuffled, each in a random paraphrase."""
    order = list(ATTRIBUTES)
    rng.shuffle(order)
    return " ".join(fact_sentence(entity, a, rng.choice(CORPUS_TEMPLATES[a])) for a in order)


def make_corpus(seen_entities: list[Entity], bios_per_entity: int, seed: int) -> list[str]:
    """Lines of corpus.txt: bios_per_entity bios per seen entity, in a shuffled order."""
    rng = random.Random(f"corpus-{seed}")
    lines = [bio(e, rng) for e in seen_entities for _ in range(bios_per_entity)]
    rng.shuffle(lines)
    return lines


def make_retention(seen_entities: list[Entity], corpus_lines: list[str], seed: int) -> list[str]:
    """Lines of retention.txt: one fresh bio per seen entity, none a line of corpus.txt."""
    rng = random.Random(f"retention-{seed}")
    in_corpus = set(corpus_lines)
    lines = []
    for entity in seen_entities:
        line = bio(entity, rng)
        while line in in_corpus:  # 2.9M orderings x phrasings per entity: practically never
            line = bio(entity, rng)
        lines.append(line)
    return lines
