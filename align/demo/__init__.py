"""The demo world: a small, deterministic, fully synthetic world with known answers.

A knowledge base of fictional entities, rendered as a pretraining corpus; instruction tasks
of five kinds; a gold preference that simulated annotators rank by; RAG documents that include
held-out facts; and a tiny Llama pre-trained on the corpus. See build.py for the layout of a
world directory and docs/design.md ("Demo world") for why it exists.

    from align.demo import build_world, resolve_demo_ref, GoldPreference
    root = build_world("tiny")                      # cached under $ALIGN_CACHE/worlds/
    model_path = resolve_demo_ref("demo:tiny/model")
    gold = GoldPreference.from_world(root)
"""

from align.demo.build import (
    build_world,
    resolve_demo_ref,
    resolve_if_demo_ref,
    world_dir,
)
from align.demo.gold import GoldPreference
from align.demo.probe import (
    doc_copy_rate,
    fact_completion_rate,
    instruction_answer_rate,
)
from align.demo.spec import SIZES, WORLD_VERSION
from align.demo.tasks import render_prompt

__all__ = [
    "SIZES",
    "WORLD_VERSION",
    "GoldPreference",
    "build_world",
    "doc_copy_rate",
    "fact_completion_rate",
    "instruction_answer_rate",
    "render_prompt",
    "resolve_demo_ref",
    "resolve_if_demo_ref",
    "world_dir",
]
