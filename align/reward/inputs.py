"""Config -> train/validation/test pairs (and held-out rankings), with every drop counted.

Steps: (simulated rankings for the demo world) -> read sources -> split train by prompt for
whatever validation/test file is missing -> rankings to pairs (dedup, aggregation, margin)
-> checks. Nothing trainable is an AlignInputError that says what the data held.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from align.errors import AlignInputError
from align.reward.data import PreferenceSource, load_preferences
from align.reward.pairs import (
    Pair,
    PairStats,
    Ranking,
    clean_pairs,
    item_key,
    rankings_to_pairs,
    split_by_group,
    training_rankings,
)

SPLITS = ("train", "validation", "test")


@dataclass
class SplitData:
    pairs: list[Pair]
    rankings: list[Ranking]
    stats: PairStats
    source: str


@dataclass
class RewardData:
    splits: dict[str, SplitData]
    files: list[str] = field(default_factory=list)  # hashed into env.json
    warnings: list[str] = field(default_factory=list)
    gold: Any = None  # the demo world's GoldPreference when simulated

    def get(self, name: str) -> SplitData | None:
        return self.splits.get(name)

    def summary(self) -> dict[str, dict]:
        return {
            name: {**s.stats.as_dict(), "rankings": len(s.rankings), "source": s.source}
            for name, s in self.splits.items()
        }


def simulate_sources(config, data_dir: Path) -> tuple[dict[str, str], Any]:
    """Write simulated-annotator rankings for data.train (and data.test) prompts; return their paths."""
    from align.reward.demo_data import read_prompt_rows, simulate_rankings, write_rankings

    sim = config.simulate
    world = Path(sim.world) if sim.world else Path(config.data.train).resolve().parents[1]
    gold = gold_of(
        world,
        "simulate: ",
        "set simulate.world (e.g. 'demo:demo/') or point data.train at a world's preference/train.jsonl",
    )
    paths = {}
    for split in ("train", "validation", "test"):
        source = getattr(config.data, split)
        if source is None:
            continue
        rows = read_prompt_rows(Path(source))
        if not rows:
            raise AlignInputError(f"simulate: {source} holds no {{prompt, reference}} rows to rank")
        ranked = simulate_rankings(
            rows, gold, sim.annotators, sim.noise, sim.candidates, sim.near_miss, sim.seed, split, sim.random_annotators
        )
        paths[split] = str(write_rankings(ranked, data_dir / f"rankings_{split}.jsonl"))
    return paths, gold


def gold_of(world: Path, where: str = "eval.gold_world: ", fix: str = "name a demo world folder (e.g. 'demo:demo/')"):
    """The demo world's gold rule (GoldPreference), or a clear error when world is not a world."""
    from align.demo.gold import GoldPreference

    if not (world / "gold.jsonl").is_file():
        raise AlignInputError(f"{where}{world} is not a demo world (no gold.jsonl); {fix}")
    return GoldPreference.from_world(world)


def to_split(name: str, source: PreferenceSource, aggregate: bool, margin_from_gap: bool) -> SplitData:
    if source.kind == "rankings":
        pairs, stats = rankings_to_pairs(source.rankings, aggregate, margin_from_gap)
    else:
        pairs, stats = clean_pairs(source.pairs)
        if margin_from_gap:  # a score gap read with the pairs (UltraFeedback) becomes the margin
            for pair in pairs:
                if pair.gap is not None and not pair.margin:
                    pair.margin = pair.gap
    return SplitData(pairs, source.rankings, stats, source.source)


def prepare_data(config, data_dir: Path | None = None) -> RewardData:
    """Everything the stage trains and evaluates on (see module docstring)."""
    gold = None
    sources = {split: getattr(config.data, split) for split in SPLITS}
    if config.simulate is not None:
        if data_dir is None:
            raise ValueError("simulated rankings need a folder to be written to")
        simulated, gold = simulate_sources(config, data_dir)
        sources.update(simulated)
    elif config.eval.gold_world:
        gold = gold_of(Path(config.eval.gold_world))
    read = {
        split: load_preferences(
            src, config.data.columns, config.data.format, split="train" if split == "train" else split
        )
        for split, src in sources.items()
        if src is not None
    }
    fractions = {"train": 1.0}
    if "validation" not in read and config.data.validation_fraction > 0:
        fractions["validation"] = config.data.validation_fraction
    if "test" not in read and config.eval.test_fraction > 0:
        fractions["test"] = config.eval.test_fraction
    if len(fractions) > 1:
        read.update(split_source(read["train"], fractions, config.training.seed))
    splits = {
        name: to_split(name, src, config.aggregate_annotators, config.margin_from_rank_gap)
        for name, src in read.items()
    }
    data = RewardData(splits, [s for s in sources.values() if s and Path(s).exists()], gold=gold)
    limit_train(data, config.data.max_samples)
    check(data)
    return data


def split_source(source: PreferenceSource, fractions: dict[str, float], seed: int) -> dict[str, PreferenceSource]:
    """Split rankings (or pairs) by prompt, so no prompt is in two splits."""
    items = source.rankings if source.kind == "rankings" else source.pairs
    parts = split_by_group(items, lambda x: x.group, fractions, seed)
    out = {}
    for name, chunk in parts.items():
        label = source.source if name == "train" else f"{source.source} ({fractions[name]:.0%} of prompts held out)"
        out[name] = PreferenceSource(
            source.kind, chunk if source.kind == "rankings" else [], chunk if source.kind == "pairs" else [], label
        )
    return out


def limit_train(data: RewardData, max_samples: int | None) -> None:
    train = data.splits["train"]
    if max_samples is not None and len(train.pairs) > max_samples:
        data.warnings.append(f"train: using {max_samples} of {len(train.pairs)} pairs (data.max_samples)")
        train.pairs = train.pairs[:max_samples]


def describe(stats: PairStats) -> str:
    parts = [f"{stats.records} records"]
    if stats.duplicate_records:
        parts.append(f"{stats.duplicate_records} exact duplicates dropped")
    if stats.all_tied:
        parts.append(f"{stats.all_tied} rankings all tied (no pairs)")
    if stats.chosen_equals_rejected:
        parts.append(f"{stats.chosen_equals_rejected} pairs with chosen == rejected dropped")
    return ", ".join(parts) + f" -> {stats.pairs} pairs"


def listwise_rankings(config, data: RewardData) -> dict[str, list[Ranking]]:
    """The train (and validation) rankings for loss plackett_luce; pairs cannot be trained listwise."""
    out = {}
    for name in ("train", "validation"):
        split = data.get(name)
        if split is None:
            continue
        if not split.rankings:
            raise AlignInputError(
                f"loss: plackett_luce learns from whole rankings, but the {name} data ({split.source}) holds pairs; "
                "give rankings ({prompt, responses, ranks}) or use loss: bradley_terry"
            )
        out[name] = training_rankings(split.rankings, config.aggregate_annotators)[0]
    return out


def annotator_weights(config, data: RewardData) -> dict[str, dict] | None:
    """annotator_weights: reliability -> {annotator: {"items", "pairs", "reliability", "weight"}} from
    the train rankings (None when off); a setting the data cannot support is an input error."""
    if config.annotator_weights == "none":
        return None
    from annotation_ui.agreement import annotator_reliability, reliability_weights

    where = "annotator_weights: reliability"
    if config.aggregate_annotators:
        raise AlignInputError(f"{where} weighs each annotator's rankings: set aggregate_annotators: false")
    rankings = data.splits["train"].rankings
    names = sorted({r.annotator for r in rankings if r.annotator})
    if not rankings or len(names) < 2:
        raise AlignInputError(
            f"{where} needs rankings from at least 2 annotators on shared items; the train data has "
            + (f"only {names[0]!r}" if names else "no annotator names")
            + " (use annotator_weights: none)"
        )
    by_item: dict = {}
    for r in rankings:
        if r.annotator:
            by_item.setdefault(item_key(r), {})[r.annotator] = list(r.ranks)
    reliability = annotator_reliability(by_item)
    if not any(v["pairs"] for v in reliability.values()):
        raise AlignInputError(f"{where}: no item was ranked by two annotators, so there is nothing to compare")
    weights = reliability_weights(reliability)
    return {name: {**figures, "weight": weights[name]} for name, figures in reliability.items()}


def check(data: RewardData) -> None:
    """Warn about everything dropped; fail when nothing can be trained."""
    for name, split in data.splits.items():
        s = split.stats
        if s.duplicate_records or s.all_tied or s.chosen_equals_rejected:
            data.warnings.append(f"{name} ({split.source}): {describe(s)}")
    train = data.splits["train"]
    if not train.pairs:
        raise AlignInputError(
            f"no training pairs in {train.source}: {describe(train.stats)}. A ranking needs at least two different "
            "ranks (ties give no pair) and a pair needs chosen != rejected; check the ranks or the export"
        )
    train_prompts = {p.group for p in train.pairs}
    for name in ("validation", "test"):
        split = data.splits.get(name)
        if split is None:
            continue
        if not split.pairs:
            data.warnings.append(f"{name} ({split.source}): no pairs, so no {name} figures")
        leaked = {p.group for p in split.pairs} & train_prompts
        if leaked:
            data.warnings.append(f"{name}: {len(leaked)} prompts also occur in train; its accuracy is optimistic")
