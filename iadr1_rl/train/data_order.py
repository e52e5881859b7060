"""Deterministic data order: the batch of any step is a function of (seed, step), so a
resumed run reads exactly what the uninterrupted run would have read."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    order = list(range(n))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return order


def batch_at(items: Sequence[T], step: int, batch_size: int, seed: int) -> list[T]:
    """The `step`-th batch of an endless sequence of shuffled epochs.

    >>> sorted(batch_at("abcd", 0, 2, seed=1) + batch_at("abcd", 1, 2, seed=1))
    ['a', 'b', 'c', 'd']
    """
    if not items:
        raise ValueError("no training data")
    n = len(items)
    orders: dict[int, list[int]] = {}  # a batch touches one or two epochs: shuffle each once
    batch = []
    for position in range(step * batch_size, (step + 1) * batch_size):
        epoch, index = divmod(position, n)
        if epoch not in orders:
            orders[epoch] = epoch_order(n, seed, epoch)
        batch.append(items[orders[epoch][index]])
    return batch
