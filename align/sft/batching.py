"""Batches of examples of similar length, in random order.

A batch pads to its longest example, so random batches of SFT examples (SmolLM2 on the demo
world: 59 tokens on average, 96 at most) spend about a third of their compute on padding.
Sorting the whole epoch by length would remove it but train short examples last; sorting only
inside shuffled windows of a few batches, then shuffling the batches, removes most of the
padding and keeps the order random. HF's own LengthGroupedSampler sorts windows of 50 batches and
keeps them in length order, which for a few hundred examples is the whole epoch sorted.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch


def length_bucketed_order(
    lengths: Sequence[int], batch_size: int, window_batches: int, generator: torch.Generator
) -> list[int]:
    """Every index once: shuffled, sorted by length inside windows of `window_batches` batches,
    cut into batches, and the batches shuffled."""
    shuffled = torch.randperm(len(lengths), generator=generator).tolist()
    window = batch_size * window_batches
    batches = []
    for start in range(0, len(shuffled), window):
        chunk = sorted(shuffled[start : start + window], key=lambda i: lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [i for b in torch.randperm(len(batches), generator=generator).tolist() for i in batches[b]]


class LengthBucketSampler(torch.utils.data.Sampler[int]):
    """`length_bucketed_order` per epoch, reproducible from (seed, epoch) so a resumed run replays it."""

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, window_batches: int = 8):
        self.lengths, self.batch_size, self.seed, self.window_batches = list(lengths), batch_size, seed, window_batches
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(length_bucketed_order(self.lengths, self.batch_size, self.window_batches, generator))
