"""Reading practice for SFT: questions about fresh fictional entities, answerable only from a passage.

A model pre-trained on bios learns facts into its weights but never learns to copy a fact from
its context (measured on the demo world: 1% of held-out facts completed even with the entity's
document in the prompt). Fine-tuning on questions about *seen* entities with their passages
does not teach reading either, since the answer is already in the weights. So these rows use
entities that exist nowhere else (not in the pretraining corpus, the SFT data, or the world's
held-out set): the passage is the only source of the answer. This is retrieval-augmented
instruction tuning in the spirit of RAFT (Zhang et al., 2024), with the eval's own prompt
template, so training and evaluation prompts match.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from align.config.rag import PromptConfig
from align.rag.prompt import build_prompt
from align.retrieval.chunking import Chunk
from align.retrieval.index import Hit



def fresh_entities(n: int, taken_names: list[str], seed: int):
    """n entities with random facts whose names do not overlap any taken name (either way)."""
    from align.demo.kb import make_kb

    entities, attempt = [], 0
    while len(entities) < n:
        batch = make_kb(2 * n, 0, seed=f"reading-{seed}-{attempt}")  # type: ignore[arg-type]
        taken = taken_names + [e.name for e in entities]
        entities += [e for e in batch if not any(e.name in t or t in e.name for t in taken)][: n - len(entities)]
        attempt += 1
    return entities


def reading_rows(entities, prompt: PromptConfig, seed: int) -> list[dict]:
    """One alpaca row per (entity, asked attribute): instruction = passage + question, output = the answer."""
    from align.demo.corpus import fact_sentence
    from align.demo.gold import POLITE_OPENERS
    from align.demo.kb import ATTRIBUTES, QA_ATTRIBUTES
    from align.demo.tasks import fact_question

    rng = random.Random(f"reading-rows-{seed}")
    rows = []
    for entity in entities:
        passage = " ".join(fact_sentence(entity, a) for a in ATTRIBUTES)  # the rag/docs.jsonl rendering
        hit = Hit(Chunk(f"{entity.name.lower()}#0", entity.name.lower(), passage), 1.0, 1)
        for attribute in QA_ATTRIBUTES:
            question = fact_question(entity, attribute, rng)
            # Restating the passage's sentence makes the answer a copy of what follows the same words
            # in the passage (what small models learn first); polite, so the gold preference likes it.
            output = f"{rng.choice(POLITE_OPENERS)} {fact_sentence(entity, attribute)}"
            rows.append({"instruction": build_prompt(question, [hit], prompt), "input": "", "output": output, "task": "reading"})
    return rows


def write_reading_data(world: Path, out: Path, n_entities: int, prompt: PromptConfig, seed: int = 0) -> dict:
    """train.jsonl = the world's SFT train rows + reading rows, shuffled; reading.jsonl = reading rows alone."""
    kb = [json.loads(line) for line in (world / "kb.jsonl").read_text().splitlines() if line.strip()]
    entities = fresh_entities(n_entities, [e["name"] for e in kb], seed)
    rows = reading_rows(entities, prompt, seed)
    sft = [json.loads(line) for line in (world / "sft" / "train.jsonl").read_text().splitlines() if line.strip()]
    mixed = sft + rows
    random.Random(f"reading-mix-{seed}").shuffle(mixed)
    out.mkdir(parents=True, exist_ok=True)
    for name, data in (("reading.jsonl", rows), ("train.jsonl", mixed)):
        (out / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in data), encoding="utf-8")
    return {"reading_rows": len(rows), "sft_rows": len(sft), "train_rows": len(mixed), "entities": len(entities)}
