"""A seeded, rollout-like corpus for the reward benchmarks and tests.

GRPO groups of 8 completions per label: well-formed, malformed, degenerate repetition,
long rambling outputs, paraphrased locations and types. `distinct_labels` gives the same
labels as distinct objects with repeating values, as OpenRLHF (a JSON string per sample)
and HTTP bodies (a freshly decoded object per item) pass them.
"""

from __future__ import annotations

import json
import random

THINKS = [
    "The surface texture is uniform and no irregularities are visible.",
    "I observe a thin bright line running across the surface, which suggests a scratch.",
    "There is a dark circular region; compared with the background it looks like a hole.",
    "Examining the image carefully, the color is consistent and edges are clean.",
]
LOCATIONS = [
    "top left",
    "upper-left corner",
    "bottom right",
    "center",
    "the middle of the image",
    "right side",
    "lower left and top right",
    "near the top edge",
    "somewhere",
    "across the top from left to right",
]
TYPES = [
    "scratch",
    "Scratches",
    "surface scratch",
    "hole",
    "perforation",
    "stain",
    "dirt",
    "grinding damage",
    "crack",
    "scratch, hole or stain",
    "foreign-objects",
    "deformation",
    "scrach",
    "wear mark",
    "damage",
]


def rollout_corpus(n: int, seed: int, group_size: int = 8) -> tuple[list[str], list[dict]]:
    """`n` completions in GRPO groups: each prompt's label object is shared by G samples."""
    rng = random.Random(seed)
    completions, labels = [], []
    for index in range(n):
        if index % group_size == 0:
            anomalous = rng.random() < 0.5
            label = (
                {"answer": "yes", "location": rng.choice(LOCATIONS[:8]), "type": rng.choice(TYPES[:9])}
                if anomalous
                else {"answer": "no"}
            )
        kind = rng.random()
        think = " ".join(rng.choice(THINKS) for _ in range(rng.randint(1, 4)))
        if kind < 0.55:  # well-formed
            if rng.random() < 0.6:
                text = (
                    f"<think>{think}</think><location>{rng.choice(LOCATIONS)}</location>"
                    f"<type>{rng.choice(TYPES)}</type><answer>yes</answer>"
                )
            else:
                text = f"<think>{think}</think><answer>{rng.choice(['no', 'No.', 'yes'])}</answer>"
        elif kind < 0.75:  # malformed: missing closers, repeats, stray text
            pieces = [
                "<think>",
                think,
                "</think>",
                "<answer>",
                rng.choice(["yes", "no"]),
                "</answer>",
                "<location>",
                rng.choice(LOCATIONS),
                "<type>",
                rng.choice(TYPES),
            ]
            rng.shuffle(pieces)
            text = "".join(pieces[: rng.randint(3, len(pieces))])
        elif kind < 0.8:  # a degenerate policy repeating its output until max tokens (~2 KB)
            unit = (
                f"<think>{rng.choice(THINKS)}</think><location>{rng.choice(LOCATIONS)}</location>"
                f"<type>{rng.choice(TYPES)}</type>"
            )
            text = (unit * 40)[:2048]
        else:  # long rambling output that never closes its think
            text = "<think>" + " ".join(rng.choice(THINKS) for _ in range(rng.randint(20, 60)))
            if rng.random() < 0.5:
                text += "<location>" + " <think> ".join(rng.choice(LOCATIONS) for _ in range(10))
        completions.append(text)
        labels.append(label)
    return completions, labels


def distinct_labels(labels: list[dict], as_text: bool) -> list:
    """The same labels, each item a new object: JSON text (`as_text`) or a decoded dict."""
    texts = [json.dumps(label) for label in labels]
    return texts if as_text else [json.loads(text) for text in texts]
