"""Simulated annotators: rank items by the demo world's gold preference, plus noise.

They go through the same store calls as people (next_item -> submit), so the quota, the
one-ranking-per-annotator rule and the assignment policy apply to them too.
"""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from annotation_ui.store import Store


class Ranker(Protocol):
    def rank(self, prompt: str, responses: list[str], noise: float, rng: random.Random) -> list[int]: ...


@dataclass
class SimulationResult:
    rankings: int
    annotators: list[str]


def ensure_annotators(store: Store, count: int, prefix: str = "sim-") -> list[str]:
    """sim-1..sim-N, created with random passwords (they never log in) when absent."""
    existing = {name for name, _ in store.annotators(include_disabled=True)}
    names = [f"{prefix}{i}" for i in range(1, count + 1)]
    for name in names:
        if name not in existing:
            store.add_annotator(name, secrets.token_urlsafe(16))
    return names


def simulate(
    store: Store,
    ranker: Ranker,
    annotators: list[str],
    noise: float,
    seed: int = 0,
    max_rankings: int | None = None,
    progress: bool = True,
) -> SimulationResult:
    """Round-robin over annotators until nobody gets an item (every quota met) or max_rankings."""
    from tqdm import tqdm

    rngs = {name: random.Random(f"{seed}:{name}") for name in annotators}
    active = list(annotators)
    done = 0
    bar = tqdm(total=max_rankings, desc="simulated rankings", disable=not progress)
    while active and (max_rankings is None or done < max_rankings):
        for name in list(active):
            view = store.next_item(name)
            if view is None:
                active.remove(name)
                continue
            store.submit(name, view.item_id, ranker.rank(view.prompt, view.responses, noise, rngs[name]))
            done += 1
            bar.update(1)
            if max_rankings is not None and done >= max_rankings:
                break
    bar.close()
    return SimulationResult(rankings=done, annotators=annotators)


def world_folder(world: str | Path) -> Path:
    """A world folder, or a file inside it (world.json, gold.jsonl), -> the folder."""
    path = Path(world)
    return path.parent if path.is_file() else path


def gold_ranker(world: str | Path) -> Ranker:
    from align.demo.gold import GoldPreference
    from align.errors import AlignInputError

    folder = world_folder(world)
    if not (folder / "gold.jsonl").is_file():
        raise AlignInputError(
            f"{folder} is not a demo world (no gold.jsonl); build one with `align demo` or set simulate.world"
        )
    return GoldPreference.from_world(folder)
