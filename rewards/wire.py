"""The reward wire formats shared by the OpenRLHF reward file and the HTTP server.

`score_queries` is OpenRLHF's: queries (prompt + response, decoded with special tokens),
prompts and labels in; rewards, scores and per-part logs out. `score_completions` is
ours: completions and labels in, every part and its explanation out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .chat import extract_completion
from .labels import Label
from .scorer import PARTS, Scorer


def parse_labels(scorer: Scorer, labels: Sequence[Any]) -> list[Label]:
    """Parse every label, naming the item of the first invalid one."""
    parsed = []
    for index, label in enumerate(labels):
        try:
            parsed.append(scorer.parse_label(label))
        except ValueError as error:
            raise ValueError(f"labels[{index}]: {error}") from error
    return parsed


def _check_lengths(**named: Sequence[Any]) -> None:
    lengths = {name: len(values) for name, values in named.items()}
    if len(set(lengths.values())) > 1:
        described = ", ".join(f"{n} {name}" for name, n in lengths.items())
        raise ValueError(f"lengths differ: {described}")


def score_queries(scorer: Scorer, queries: Sequence[str], prompts: Sequence[str], labels: Sequence[Any]) -> dict:
    """OpenRLHF's protocol: `{"rewards", "scores", "extra_logs": {part: […]}}` as lists."""
    _check_lengths(queries=queries, prompts=prompts, labels=labels)
    parsed = parse_labels(scorer, labels)
    completions = [extract_completion(q, p) for q, p in zip(queries, prompts)]
    results = scorer.score_batch(completions, parsed)
    return {
        "rewards": [r.total for r in results],
        "scores": [r.normalised for r in results],
        "extra_logs": {part: [getattr(r, part) for r in results] for part in PARTS},
    }


def score_completions(scorer: Scorer, completions: Sequence[str], labels: Sequence[Any], group: bool) -> dict:
    """Our native protocol: every part of every score; with `group`, one label for all
    completions and the group-relative advantages."""
    if group:
        if len(labels) != 1:
            raise ValueError(f"a group is scored against exactly one label, got {len(labels)}")
        label = parse_labels(scorer, labels)[0]
        scored = scorer.score_group(completions, label)
        return {
            "results": [r.as_dict() for r in scored.scores],
            "advantages": scored.advantages,
            "has_signal": scored.has_signal,
            "mean": scored.mean,
            "std": scored.std,
        }
    _check_lengths(completions=completions, labels=labels)
    results = scorer.score_batch(completions, parse_labels(scorer, labels))
    return {"results": [r.as_dict() for r in results]}
