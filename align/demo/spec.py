"""World sizes: every number that makes a "demo" world differ from a "tiny" one, in one place.

The "demo" world is sized to exercise every stage on 2 CPU cores in minutes and to give a
base model that really knows its facts; "tiny" only has to exercise the code paths in tests,
in seconds, so its model learns little.
"""

from __future__ import annotations

from dataclasses import dataclass

from align.errors import AlignInputError

# Bump when the generated content changes: the version is part of the cache path, so old
# cached worlds are never mistaken for new ones.
WORLD_VERSION = 6


@dataclass(frozen=True)
class ModelSpec:
    """A tiny Llama and the budget it is pre-trained with."""

    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_position_embeddings: int = 512
    block_size: int = 128  # packed pretraining sequence length: about two bios per block
    # Small batches, many steps: at a fixed token budget, more updates memorise more facts
    # (tuned on the demo world: B=8 x 1600 steps recalled 94% of facts, B=16 x 800 26%).
    batch_size: int = 8
    steps: int = 1600
    lr: float = 2e-3  # 3e-3 at B=16/32 sat on the loss plateau longer; 5e-3 never left it
    warmup_frac: float = 0.05
    min_lr_frac: float = 0.1  # cosine decays to this fraction of lr
    weight_decay: float = 0.0  # decay fights memorisation, which is what we want here
    threads: int | None = None  # torch CPU threads; None = every core (deterministic per thread count)
    # Steps of copying random token sequences before pretraining: they form the induction heads
    # that reading a fact from a passage needs early, instead of late in the bios-heavy mix
    # (model.warm_up_induction has the measurements).
    induction_steps: int = 0


@dataclass(frozen=True)
class WorldSpec:
    """How much of everything a world of one size holds."""

    n_seen: int  # entities whose facts are in the pretraining corpus
    n_heldout: int  # entities only in rag/docs.jsonl (for RAG vs fine-tuning)
    bios_per_entity: int  # paraphrased bios per seen entity in corpus.txt (knowledge augmentation)
    n_arithmetic: int  # item pools for the generated (non-fact) instruction tasks
    n_sort: int
    n_rewrite: int
    vocab_size: int
    model: ModelSpec
    # general-skill pretraining text (skills.py) and SFT reading practice
    n_reading: int = 0  # reading passages about fresh entities in skills.txt
    faq_repeats: int = 0  # copies of the FAQ lines of SFT-train facts
    sum_repeats: int = 0  # copies of the addition table
    n_capitals: int = 0  # sentence + upper-case copy lines
    n_sorting: int = 0  # word list + sorted copy lines
    n_reading_sft: int = 0  # SFT-train rows of task "reading" (doc + question about a fresh entity)
    n_small_talk: int = 0  # polite replies with the SFT styles' openers and fillers
    n_short_reading: int = 0  # fresh entities read fact by fact (one sentence, its question, its answer)


SIZES: dict[str, WorldSpec] = {
    "demo": WorldSpec(
        n_seen=160,  # 200 sat on the edge of what 2.7M parameters memorise in the budget (67-99% recall)
        n_heldout=40,
        bios_per_entity=48,  # pretraining sees each bio ~3 times: too few to memorise bios
        n_arithmetic=160,  # of the 256 sums a + b <= 15 + 15
        n_sort=300,
        n_rewrite=300,
        vocab_size=2000,
        model=ModelSpec(
            hidden_size=192, num_layers=4, num_heads=4, intermediate_size=768, steps=3000, induction_steps=300
        ),
        n_reading=2000,
        faq_repeats=3,
        sum_repeats=16,  # the 256-sum table 16 times: learnt like the bios' facts
        n_capitals=1000,
        n_sorting=3000,  # sorting is the hardest skill for a 4-layer model
        n_reading_sft=150,
        n_small_talk=600,
        n_short_reading=2400,
    ),
    "tiny": WorldSpec(
        n_seen=24,
        n_heldout=6,
        bios_per_entity=2,
        n_arithmetic=40,
        n_sort=40,
        n_rewrite=40,
        vocab_size=500,
        n_reading=20,
        faq_repeats=1,
        sum_repeats=1,
        n_capitals=20,
        n_sorting=20,
        n_reading_sft=10,
        n_small_talk=20,
        n_short_reading=10,
        model=ModelSpec(
            hidden_size=32,
            num_layers=2,
            num_heads=2,
            intermediate_size=128,
            block_size=64,
            steps=30,
            induction_steps=5,
            threads=1,  # too small to gain from threads; 1 also makes its weights machine-independent
        ),
    ),
}


def get_spec(size: str) -> WorldSpec:
    """The spec of a named size; an unknown name is a user error, not a bug."""
    if size not in SIZES:
        raise AlignInputError(f"unknown demo world size {size!r}; use one of {sorted(SIZES)} (e.g. 'demo:tiny/model')")
    return SIZES[size]
