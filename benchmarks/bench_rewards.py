"""Throughput of `Scorer.score_batch` against a straightforward implementation.

The baseline below implements the same spec the obvious way: backtracking `fullmatch`
regexes for the patterns, a word regex per direction for locations, `difflib` for every
fuzzy comparison and no caches. Both run on one core over the same seeded,
rollout-like corpus; the printed ratio is measured in this run.

    python benchmarks/bench_rewards.py [--n 4000] [--seed 0]
"""

from __future__ import annotations

import argparse
import difflib
import random
import re
import sys
import time
import unicodedata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nltk.stem.snowball import SnowballStemmer

from rewards import Scorer
from rewards.vocabulary import DEFAULT_GROUPS

# ----------------------------------------------------------------------------- corpus
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


# --------------------------------------------------------------------------- baseline
P_N = re.compile(r"\s*<think>(.+?)</think>\s*<answer>(.+?)</answer>\s*", re.DOTALL)
P_A = re.compile(
    r"\s*<think>(.+?)</think>\s*<location>(.+?)</location>\s*<type>(.+?)</type>\s*<answer>(.+?)</answer>\s*",
    re.DOTALL,
)
TAG_WORDS = ("<think>", "</think>", "<location>", "</location>", "<type>", "</type>", "<answer>", "</answer>")
STEMMER = SnowballStemmer("english")
AXES = {
    "top": r"\b(top|upper|up|above)\b",
    "bottom": r"\b(bottom|lower|down|below|beneath)\b",
    "left": r"\bleft\b",
    "right": r"\bright\b",
}


def naive_pattern(text: str, pattern: re.Pattern) -> bool:
    m = pattern.fullmatch(text)
    if not m or any(not g.strip() or any(t in g for t in TAG_WORDS) for g in m.groups()):
        return False
    return pattern is P_A or ("<location>" not in text and "<type>" not in text)


def naive_tag(text: str, name: str) -> str | None:
    found = re.findall(rf"<{name}>(.*?)</{name}>", text, re.DOTALL)
    return found[0] if len(found) == 1 and text.count(f"<{name}>") == 1 else None


def naive_cells(text: str | None) -> set[int]:
    cells: set[int] = set()
    for clause in re.split(r"\band\b|\bor\b|as well as|[,;/&]", (text or "").lower()):
        clause = re.sub(r"[^a-z]+", " ", clause)
        hit = {k: bool(re.search(v, clause)) for k, v in AXES.items()}
        middle = bool(re.search(r"\b(middle|center|centre|central|mid)\b", clause))
        if not (any(hit.values()) or middle):
            continue
        rows = [0, 1, 2] if hit["top"] and hit["bottom"] else [0] if hit["top"] else [2] if hit["bottom"] else [1]
        cols = [0, 1, 2] if hit["left"] and hit["right"] else [0] if hit["left"] else [2] if hit["right"] else [1]
        cells |= {r * 3 + c + 1 for r in rows for c in cols}
    return cells


def naive_norm(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower().replace("-", " ").replace("_", " ")
    text = re.sub(r"[^\w\s]", "", text)
    return " ".join(STEMMER.stem(w) for w in text.split())


def naive_terms():
    for group, categories in DEFAULT_GROUPS.items():
        for category, terms in categories.items():
            for term in [category, *terms]:
                yield naive_norm(term), category, group


def naive_category(x: str):
    terms = list(naive_terms())
    for t, c, _ in terms:
        if t == x:
            return c, 1.0
    best = None
    for t, c, _ in terms:
        if f" {t} " in f" {x} " or f" {x} " in f" {t} ":
            conf = min(len(t), len(x)) / max(len(t), len(x))
            if best is None or conf > best[1]:
                best = (c, conf)
    if best:
        return best
    ratios = [(difflib.SequenceMatcher(None, x, t).ratio(), c) for t, c, _ in terms]
    r, c = max(ratios)
    return (c, r) if r >= 0.7 else (None, 0.0)


def naive_type(pred: str | None, gold: str) -> float:
    p, g = naive_norm(pred or ""), naive_norm(gold)
    if not p or not g:
        return 0.0
    terms = list(naive_terms())
    found = {
        c
        for t, c, _ in terms
        if f" {t} " in f" {p} "
        and not any(t != u and f" {t} " in f" {u} " and f" {u} " in f" {p} " for u, _, _ in terms)
    }
    if len(found) >= 2:
        return 0.0
    group_of = {c: grp for _, c, grp in terms}
    groups = {naive_norm(name): name for name in DEFAULT_GROUPS}
    pc, pconf = naive_category(p)
    gc, gconf = naive_category(g)
    pg, gg = groups.get(p) or group_of.get(pc), groups.get(g) or group_of.get(gc)
    if pg and gg and pg != gg:
        return 0.0
    if (p in groups) != (g in groups):
        other = gc if p in groups else pc
        if other and group_of[other] == (pg if p in groups else gg):
            return 0.3
    if p == g:
        return 1.0
    if f" {p} " in f" {g} " or f" {g} " in f" {p} ":
        return 0.85
    if pc and gc:
        if pc == gc:
            return 0.6 + 0.25 * min(pconf, gconf)
        if group_of[pc] == group_of[gc]:
            return 0.3
    s = difflib.SequenceMatcher(None, p, g).ratio()
    return 0.4 * s if s >= 0.7 else 0.0


def naive_score(text: str, label: dict) -> float:
    text = text.strip()
    anomalous = label["answer"] == "yes"
    consistency = float(naive_pattern(text, P_A if anomalous else P_N))
    raw = naive_tag(text, "answer")
    answer = raw.strip().lower().rstrip(".!").strip() if raw is not None else None
    accuracy = float(answer == label["answer"])
    total = consistency + accuracy
    if anomalous and answer == "yes":
        predicted = naive_cells(naive_tag(text, "location"))
        total += float(bool(predicted) and predicted == naive_cells(label.get("location")))
        total += naive_type(naive_tag(text, "type"), label.get("type", ""))
    return total


# ------------------------------------------------------------------------------- run
def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=4000, help="completions in the corpus")
    parser.add_argument("--baseline-n", type=int, default=400, help="completions the slow baseline scores")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    try:
        import os

        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    except (AttributeError, OSError):
        pass
    completions, labels = rollout_corpus(args.n, args.seed)
    scorer = Scorer()
    ours = scorer.score_batch(completions, labels)
    mismatches = sum(
        abs(a.total - naive_score(c, lab)) > 1e-9 for a, c, lab in zip(ours[: args.baseline_n], completions, labels)
    )
    from rewards import location, vocabulary

    for cache in (location._cached_cells, vocabulary._stem, vocabulary._normalise_cached):
        cache.cache_clear()
    fresh = Scorer()  # a fresh scorer and cleared module caches: nothing is warm
    ours_seconds = timed(lambda: fresh.score_batch(completions, labels))
    base = completions[: args.baseline_n], labels[: args.baseline_n]
    base_seconds = timed(lambda: [naive_score(c, lab) for c, lab in zip(*base)])
    ours_rate = args.n / ours_seconds
    base_rate = args.baseline_n / base_seconds
    mean_chars = sum(map(len, completions)) / args.n
    print(f"corpus: {args.n} rollout-like completions in groups of 8 (seed {args.seed}), mean {mean_chars:.0f} chars")
    print(f"score_batch:        {ours_rate:12,.0f} completions/s")
    print(f"naive baseline:     {base_rate:12,.0f} completions/s (on the first {args.baseline_n})")
    print(f"ratio:              {ours_rate / base_rate:12.1f}x  (target >= 50x)")
    print(f"disagreements with the baseline on {args.baseline_n}: {mismatches}")
    soup = "<think>a</think><location>b</location><type>c</type>"
    label = {"answer": "yes", "location": "top", "type": "hole"}
    for size in (4_000, 16_000):
        text = (soup * (size // len(soup) + 1))[:size]
        ours_ms = timed(lambda text=text: scorer.score(text, label)) * 1000
        base_ms = timed(lambda text=text: naive_score(text, label)) * 1000
        print(f"{size // 1000} KB of repeated tags: ours {ours_ms:.1f} ms, baseline {base_ms:.0f} ms")
    hostile = soup * (1_000_000 // len(soup))
    print(f"1 MB of repeated tags: ours {timed(lambda: scorer.score(hostile, label)) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
