"""How long a demo world takes to build, where the time goes, and what its base model learnt.

    python bench/world_build.py [--size demo] [--seed 0] [--set model.steps=1800 n_short_reading=800 ...]
    python bench/world_build.py --probe-only DIR     # the figures of a world already built
    python bench/world_build.py --shipped             # the default build: the shipped base model, no pre-training
    python bench/world_build.py --ship                # pre-train, then ship the weights in align/demo/pretrained/

Builds the world (the named size's spec, with --set overrides of WorldSpec / ModelSpec fields)
into a temporary folder, times each phase (text generation and tokenizer, induction warm-up,
pre-training), counts the pre-training tokens of each kind of text, and probes the base model:
seen facts recalled (the canonical sentence completed), held-out facts read from their RAG
document, and from their one sentence. A smaller world is worth having only if these hold.
It pre-trains from scratch unless --shipped; --ship (no --set) then replaces the package's
shipped weights for this size and seed (align/demo/pretrained.py), which maintainers do after
changing the world's text, tokenizer or model spec.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from align.demo import build, pretrained, probe  # noqa: E402
from align.demo.corpus import fact_sentence  # noqa: E402
from align.demo.gold import words  # noqa: E402
from align.demo.kb import ATTRIBUTES, QA_ATTRIBUTES  # noqa: E402
from align.demo.rag_data import doc_id  # noqa: E402
from align.demo.spec import get_spec  # noqa: E402
from align.demo.tasks import fact_question  # noqa: E402


def with_overrides(spec, assignments: list[str]):
    """WorldSpec with 'field=value' / 'model.field=value' replaced (ints, floats or None)."""
    for assignment in assignments:
        key, _, raw = assignment.partition("=")
        value = None if raw == "None" else (float(raw) if "." in raw or "e-" in raw else int(raw))
        if key.startswith("model."):
            spec = dataclasses.replace(spec, model=dataclasses.replace(spec.model, **{key[6:]: value}))
        else:
            spec = dataclasses.replace(spec, **{key: value})
    return spec


def reading_rate(model, tokenizer, facts, contexts: list[str]) -> float:
    """Share of held-out facts answered in the reading lessons' own format: context, question, answer."""
    rng = random.Random(0)
    prompts = [f"{c} Question: {fact_question(e, a, rng)} Answer:" for (e, a), c in zip(facts, contexts, strict=True)]
    answers = probe.greedy_continuations(model, tokenizer, prompts, max_new_tokens=16)
    hits = [e.value(a) in words(answer) for (e, a), answer in zip(facts, answers, strict=True)]
    return sum(hits) / len(hits)


def probes(world: Path) -> dict[str, float]:
    model, tokenizer, entities = probe._load(world)
    docs = {row["id"]: row["text"] for row in map(json.loads, (world / "rag" / "docs.jsonl").open())}
    held_out = probe.seen_facts(entities, QA_ATTRIBUTES, None, held_out=True)
    return {
        "seen facts recalled": probe.completion_rate(model, tokenizer, probe.seen_facts(entities, ATTRIBUTES, None)),
        "held-out read from one sentence": reading_rate(
            model, tokenizer, held_out, [fact_sentence(e, a) for e, a in held_out]
        ),
        "held-out read from the whole doc": reading_rate(
            model, tokenizer, held_out, [docs[doc_id(e)] for e, _ in held_out]
        ),
        "chat answers (base, should be low)": probe.instruction_answer_rate(world, 200),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="demo")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", nargs="*", default=[], dest="overrides")
    parser.add_argument("--probe-only", type=Path, default=None)
    parser.add_argument("--keep", type=Path, default=None, help="build here instead of a temp dir, and keep it")
    parser.add_argument("--shipped", action="store_true", help="load the shipped base model where it fits")
    parser.add_argument("--ship", action="store_true", help="ship the pre-trained weights with the package")
    args = parser.parse_args()
    if args.ship and (args.overrides or args.shipped or args.probe_only):
        parser.error("--ship ships the named size's own world: no --set, --shipped or --probe-only")

    if args.probe_only:
        world, figures = args.probe_only, {}
    else:
        spec = with_overrides(get_spec(args.size), args.overrides)
        tmp = tempfile.TemporaryDirectory()
        world = args.keep or Path(tmp.name) / "world"
        world.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        build.write_world(world, spec, args.size, args.seed, progress=False, pretrain=not args.shipped)
        total = time.perf_counter() - start
        pretrain = json.loads((world / "world.json").read_text())["pretrain"]
        if args.ship:
            print("shipped to", pretrained.ship(world), flush=True)
        trained_here = pretrain.get("source") != "shipped"
        figures = {
            "build seconds": round(total, 1),
            "base model": "pre-trained here" if trained_here else f"shipped (trained on {pretrain['trained_on']})",
            "pre-training seconds" + ("" if trained_here else " (when it was shipped)"): pretrain["seconds"],
            "pre-training steps/s": round(pretrain["steps"] / pretrain["seconds"], 2),
            "other seconds (text, tokenizer, warm-up, saving)": round(total - trained_here * pretrain["seconds"], 1),
            "tokens seen": pretrain["tokens_seen"],
            "final loss": pretrain["final_loss"],
        }
        print("overrides:", " ".join(args.overrides) or "none", flush=True)
    figures.update(probes(world))
    for name, value in figures.items():
        print(f"{name:45s} {value:.3f}" if isinstance(value, float) else f"{name:45s} {value}")


if __name__ == "__main__":
    main()
