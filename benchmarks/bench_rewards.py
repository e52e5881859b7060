"""Throughput of `Scorer.score_batch` against straightforward implementations.

`baselines.naive_score` implements the same contract the obvious way (backtracking
`fullmatch` regexes, a word regex per direction, `difflib`, no caches);
`baselines.authors_reference` does the same for the authors' released reward. Each side
runs on one core over the same seeded, rollout-like corpus, in two shapes:

- shared labels: each GRPO group's label is one object, passed G times (an in-process
  trainer);
- distinct labels: every item a new object with a repeating value (OpenRLHF passes a
  JSON string per sample; an HTTP body decodes a fresh dict per item).

Every ratio printed is measured in this run.

    python benchmarks/bench_rewards.py [--n 4000] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.baselines import authors_reference, naive_score
from benchmarks.corpus import distinct_labels, rollout_corpus
from rewards import Scorer


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def best_rate(fn, n: int, repeats: int = 3) -> float:
    """Completions per second of the fastest of `repeats` runs, each on a fresh scorer."""
    return n / min(timed(fn) for _ in range(repeats))


def clear_module_caches() -> None:
    from rewards import location, vocabulary

    for cache in (location._cached_cells, vocabulary._stem, vocabulary._normalise_cached):
        cache.cache_clear()


def solution(label: dict) -> str:
    if label["answer"] == "no":
        return "<think>t</think><answer>no</answer>"
    return f"<think>t</think><location>{label['location']}</location><type>{label['type']}</type><answer>yes</answer>"


def contract_ratios(completions: list[str], labels: list[dict], baseline_n: int) -> None:
    n = len(completions)
    mismatches = sum(
        abs(a.total - naive_score(c, lab)) > 1e-9
        for a, c, lab in zip(Scorer().score_batch(completions[:baseline_n], labels[:baseline_n]), completions, labels)
    )
    base = completions[:baseline_n], labels[:baseline_n]
    base_rate = baseline_n / timed(lambda: [naive_score(c, lab) for c, lab in zip(*base)])
    print(f"preset default, {n} completions; straightforward baseline on the first {baseline_n}: {base_rate:,.0f}/s")
    for name, shaped in (
        ("shared labels", labels),
        ("distinct labels, JSON text", distinct_labels(labels, as_text=True)),
        ("distinct labels, decoded dicts", distinct_labels(labels, as_text=False)),
    ):

        def run(shaped=shaped) -> None:
            clear_module_caches()
            Scorer().score_batch(completions, shaped)  # a fresh scorer: nothing is warm

        rate = best_rate(run, n)
        print(f"  {name:32s} {rate:10,.0f}/s   {rate / base_rate:6.1f}x  (target >= 50x)")
    print(f"  disagreements with the baseline on {baseline_n}: {mismatches}")


def authors_ratio(completions: list[str], labels: list[dict], baseline_n: int) -> None:
    solutions = [solution(label) for label in distinct_labels(labels, as_text=False)]
    ours = Scorer(preset="authors").score_batch(completions[:baseline_n], solutions[:baseline_n])
    mismatches = 0
    for result, completion, text in zip(ours, completions, solutions):
        c, a, loc, kind = authors_reference(completion, text)
        mismatches += abs(result.total - (c + a + (loc + kind) / 2)) > 1e-9
    base = completions[:baseline_n], solutions[:baseline_n]
    base_rate = baseline_n / timed(lambda: [authors_reference(c, s) for c, s in zip(*base)])
    rate = best_rate(lambda: Scorer(preset="authors").score_batch(completions, solutions), len(completions))
    print(f"preset authors, distinct solution strings: {rate:,.0f}/s")
    print(f"  their algorithm, straightforwardly: {base_rate:,.0f}/s")
    print(f"  ratio {rate / base_rate:.1f}x; disagreements on {baseline_n}: {mismatches}")


def hostile(scorer: Scorer) -> None:
    soup = "<think>a</think><location>b</location><type>c</type>"
    label = {"answer": "yes", "location": "top", "type": "hole"}
    for size in (4_000, 16_000):
        text = (soup * (size // len(soup) + 1))[:size]
        ours_ms = timed(lambda text=text: scorer.score(text, label)) * 1000
        base_ms = timed(lambda text=text: naive_score(text, label)) * 1000
        print(f"{size // 1000} KB of repeated tags: ours {ours_ms:.1f} ms, baseline {base_ms:.0f} ms")
    megabyte = soup * (1_000_000 // len(soup))
    print(f"1 MB of repeated tags: ours {timed(lambda: scorer.score(megabyte, label)) * 1000:.0f} ms")
    big = "scratch dent " * 80_000
    huge = {"answer": "yes", "location": "top " * 250_000, "type": big}
    completion = f"<think>t</think><location>{'left ' * 200_000}</location><type>{big}x</type><answer>yes</answer>"
    for preset in ("default", "authors"):
        seconds = timed(lambda preset=preset: Scorer(preset=preset).score(completion, huge))
        print(f"1 MB location and type on both sides, preset {preset}: {seconds * 1000:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=4000, help="completions in the corpus")
    parser.add_argument("--baseline-n", type=int, default=400, help="completions the slow baselines score")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    try:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    except (AttributeError, OSError):
        pass
    completions, labels = rollout_corpus(args.n, args.seed)
    mean_chars = sum(map(len, completions)) / args.n
    print(f"corpus: {args.n} rollout-like completions in groups of 8 (seed {args.seed}), mean {mean_chars:.0f} chars")
    contract_ratios(completions, labels, args.baseline_n)
    authors_ratio(completions, labels, args.baseline_n)
    hostile(Scorer())


if __name__ == "__main__":
    main()
