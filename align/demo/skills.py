"""General-skill text mixed into pretraining: reading, question answering, sums, capitals, sorting.

A base model pre-trained on bios alone memorises facts but learns no skill beyond reciting
them: it cannot copy a name from a question into its answer, read a fact from a passage, add
two numbers or upper-case a sentence, and a few hundred SFT examples cannot teach a model of
a few million parameters those skills from nothing (measured on world v2: after SFT it
answered every question with a fluent sentence about the wrong entity). Real base models
learn such skills from the web; this is the demo world's small web:

- reading passages: a document about a *fresh* entity (named like the others, but in no
  other file of the world) followed by questions about it, answerable only by reading it,
  and single fact sentences with a question on them (what the generator gets from
  sentence-level retrieval). This is what makes retrieval-augmented
  answers on held-out entities possible, together with the induction warm-up (model.py);
- FAQ lines for the facts SFT trains on ("mixed training", Allen-Zhu & Li 2023, Physics of
  LMs 3.1): seeing some facts both stated and asked lets the model answer questions about
  the facts it only saw stated, the ones the SFT test split asks;
- addition tables, sentences with their upper-case copies, and word lists with their sorted
  copies: the skills behind the arithmetic, rewrite and sort_words tasks;
- small talk: requests answered with the polite openers ("Sure!", "Of course!") and the
  chatty filler sentences of the SFT styles. Without it "!" and "Sure" never occur in
  pretraining, their (tied) embeddings stay untrained, and a LoRA SFT model, which cannot
  train embeddings, garbles every polite answer ("Sureelpal The lucky number ...", world v3),
  so PPO never sees the polite answers the gold preference likes.

All of it is plain text (no chat markup): instruction following remains SFT's job.
"""

from __future__ import annotations

import random

from align.demo.corpus import bio, fact_sentence
from align.demo.gold import POLITE_OPENERS
from align.demo.kb import QA_ATTRIBUTES, Entity, make_names, random_entity
from align.demo.rag_data import doc_text
from align.demo.tasks import FILLERS, SORT_WORDS, Item, fact_question, random_sentence


def fresh_entities(n: int, taken_names: list[str], key: str) -> list[Entity]:
    """n entities named like the world's but unlike any taken name, so they are in no other file."""
    rng = random.Random(f"fresh-{key}")
    return [random_entity(name, rng) for name in make_names(n, rng, taken=taken_names)]


def reading_passages(entities: list[Entity], seed: int, questions: int = 2) -> list[str]:
    """A passage per entity: a document about it, then questions answered from it.

    Half the documents are in the rag/docs.jsonl style (canonical sentences), half are bios.
    Answers restate the canonical fact sentence ("The home region of Zorbin is Sunmere."),
    so answering is finding that sentence and copying it, which a small model learns (an
    induction-style copy); a bare value after a paraphrased question it does not.
    """
    rng = random.Random(f"reading-{seed}")
    lines = []
    for i, entity in enumerate(entities):
        document = doc_text(entity) if i % 2 == 0 else bio(entity, rng)
        asked = rng.sample(QA_ATTRIBUTES, questions)
        qa = " ".join(f"Question: {fact_question(entity, a, rng)} Answer: {fact_sentence(entity, a)}" for a in asked)
        lines.append(f"{document} {qa}")
    return lines


def short_passages(entities: list[Entity], seed: int) -> list[str]:
    """For each entity and asked fact: that fact's sentence, then the question and its answer.

    Sentence-level retrieval hands the generator one sentence (`align eval` on the demo world),
    and these are the reading lessons for it. One fact per passage matters: a world built with
    one to three facts of the entity per lesson, in a random order (and a warm-up trained on the
    copied half only), learnt no reading at all (held-out facts read from one sentence 0.11,
    from two 0.11); world v5 reads 1.00 and 0.61 (README `align rag`).
    """
    rng = random.Random(f"short-reading-{seed}")
    return [
        f"{fact_sentence(entity, asked)} Question: {fact_question(entity, asked, rng)} Answer: {fact_sentence(entity, asked)}"
        for entity in entities
        for asked in QA_ATTRIBUTES
    ]


def faq_lines(items: list[Item]) -> list[str]:
    """'Question: ... Answer: ...' for each item (used with SFT-train items), one line each."""
    return [f"Question: {' '.join(i.prompt.split())} Answer: {i.reference}." for i in items]


def addition_lines(max_operand: int, per_line: int, seed: int) -> list[str]:
    """Every sum a + b (0 <= a, b <= max_operand), shuffled, per_line equations a line."""
    rng = random.Random(f"sums-{seed}")
    sums = [f"{a} + {b} = {a + b}." for a in range(max_operand + 1) for b in range(max_operand + 1)]
    rng.shuffle(sums)
    return [" ".join(sums[i : i + per_line]) for i in range(0, len(sums), per_line)]


def capitals_lines(n: int, seed: int) -> list[str]:
    """Random task sentences followed by their upper-case copy."""
    rng = random.Random(f"capitals-{seed}")
    return [f"{s}. In capitals: {s.upper()}." for s in (random_sentence(rng) for _ in range(n))]


def sorting_lines(n: int, seed: int) -> list[str]:
    """Random word lists followed by the same words in alphabetical order."""
    rng = random.Random(f"sorting-{seed}")
    lines = []
    for _ in range(n):
        words = rng.sample(SORT_WORDS, rng.choice((3, 4, 5)))
        lines.append(f"Words: {', '.join(words)}. Sorted: {', '.join(sorted(words))}.")
    return lines


REQUESTS = ("Can you tell me a story?", "Please describe the scene.", "Could you help me?", "Say something nice.")


def small_talk_lines(n: int, seed: int) -> list[str]:
    """Requests answered politely, every other one chattily: the SFT styles' words in plain text.

    Openers and fillers take turns, so even a few lines hold each of them.
    """
    rng = random.Random(f"small-talk-{seed}")
    lines = []
    for i in range(n):
        reply = f"{POLITE_OPENERS[i % len(POLITE_OPENERS)]} {random_sentence(rng).capitalize()}."
        if i % 2:
            reply = f"{reply} {FILLERS[i // 2 % len(FILLERS)]}"
        lines.append(f"{rng.choice(REQUESTS)} {reply}")
    return lines
