"""Micro-batches by token budget: the samples of an update split so that no forward holds
more than `max_tokens` padded tokens (OpenRLHF's and verl's "max tokens per GPU").

Samples are grouped by length, longest first, so that a micro-batch pads its rows to
nearly their own length; the groups come back as index lists into the caller's order.
"""

from __future__ import annotations

from collections.abc import Sequence


class TokenBudgetError(ValueError):
    """One sample alone is longer than the budget: no split can fit it."""


def token_budget_batches(
    lengths: Sequence[int], max_tokens: int, budget_key: str = "the token budget"
) -> list[list[int]]:
    """Indices into `lengths`, grouped so that each group's padded size (rows × its longest)
    is at most `max_tokens`, longest samples first.

    >>> token_budget_batches([5, 9, 3, 8], 18)
    [[1, 3], [0, 2]]
    >>> token_budget_batches([5, 9, 3, 8], 100)
    [[1, 3, 0, 2]]
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    if order and lengths[order[0]] > max_tokens:
        raise TokenBudgetError(
            f"a sample of {lengths[order[0]]} tokens (prompt and response) does not fit {budget_key} "
            f"of {max_tokens} tokens per forward: raise it, or shorten prompts (model.max_pixels) or "
            "responses (grpo.max_new_tokens)"
        )
    batches: list[list[int]] = []
    for index in order:
        # Longest first: a group's first sample is its longest, so its padded size is rows × that.
        if batches and (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= max_tokens:
            batches[-1].append(index)
        else:
            batches.append([index])
    return batches


def split_evenly(count: int, parts: int) -> list[list[int]]:
    """`count` indices in `parts` contiguous groups as even as can be (a fixed number of
    micro-batches, as DeepSpeed's accumulation needs).

    >>> split_evenly(5, 2)
    [[0, 1, 2], [3, 4]]
    """
    size = -(-count // max(1, parts))
    return [list(range(start, min(count, start + size))) for start in range(0, count, size)]


def pad_micro_batches(parts: Sequence[Sequence[int]], count: int) -> list[tuple[list[int], float]]:
    """`parts` made `count` micro-batches, as a rank whose share split into fewer than another
    rank's must run: the largest parts halved while one has two samples or more (each half
    still fits the budget its whole did), then fillers (a sample again, its loss weighted 0).
    Each: (sample indices, loss weight).

    >>> pad_micro_batches([[0, 1, 2], [3]], 3)
    [([3], 1.0), ([0], 1.0), ([1, 2], 1.0)]
    >>> pad_micro_batches([[0]], 2)
    [([0], 1.0), ([0], 0.0)]
    """
    split = [list(part) for part in parts]
    while len(split) < count and any(len(part) > 1 for part in split):
        largest = max(range(len(split)), key=lambda i: len(split[i]))
        part = split.pop(largest)
        half = len(part) // 2
        split += [part[:half], part[half:]]
    out = [(part, 1.0) for part in split]
    filler = split[0][:1] if split else []
    return out + [(filler, 0.0)] * (count - len(out))
