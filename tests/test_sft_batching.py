"""Length-bucketed SFT batches: every example once per epoch, batches of similar length, batch
order random, the same order again for the same (seed, epoch)."""

from __future__ import annotations

import torch

from align.sft.batching import LengthBucketSampler, length_bucketed_order


def padding_share(order: list[int], lengths: list[int], batch_size: int) -> float:
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    return 1 - sum(lengths) / padded


def test_bucketed_order_covers_every_example_with_little_padding():
    lengths = [10, 90, 20, 80, 30, 70, 40, 60, 50, 55, 15, 85]
    order = length_bucketed_order(lengths, batch_size=2, window_batches=6, generator=torch.Generator().manual_seed(0))
    assert sorted(order) == list(range(12))
    # one window holds the whole epoch here: each batch is two neighbours in length order
    pairs = sorted(tuple(sorted(lengths[i] for i in order[k : k + 2])) for k in range(0, 12, 2))
    assert pairs == [(10, 15), (20, 30), (40, 50), (55, 60), (70, 80), (85, 90)]


def test_padding_falls_and_the_batch_order_stays_random():
    gen = torch.Generator().manual_seed(1)
    lengths = torch.randint(20, 97, (384,), generator=gen).tolist()
    random_order = torch.randperm(384, generator=gen).tolist()
    bucketed = list(LengthBucketSampler(lengths, batch_size=8, seed=0))
    assert sorted(bucketed) == list(range(384))
    assert padding_share(bucketed, lengths, 8) < 0.1 < 0.2 < padding_share(random_order, lengths, 8)
    batch_maxima = [max(lengths[i] for i in bucketed[k : k + 8]) for k in range(0, 384, 8)]
    assert batch_maxima != sorted(batch_maxima) and batch_maxima != sorted(batch_maxima, reverse=True)


def test_the_order_is_reproducible_per_epoch():
    lengths = list(range(50))
    sampler = LengthBucketSampler(lengths, batch_size=4, seed=3)
    first = list(sampler)
    assert list(sampler) == first
    sampler.set_epoch(1)
    second = list(sampler)
    assert second != first
    again = LengthBucketSampler(lengths, batch_size=4, seed=3)
    again.set_epoch(1)
    assert list(again) == second
