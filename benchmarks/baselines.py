"""Straightforward implementations of the two reward presets, for the benchmarks and as
test oracles.

`naive_score` implements the contract (preset `default`) the obvious way: backtracking
`fullmatch` regexes for the patterns, a word regex per direction for locations, `difflib`
for every fuzzy comparison and no caches. `authors_reference` implements the authors'
released reward (preset `authors`) the obvious way: their backtracking searches and
patterns, substring direction words, their normalisation and `difflib`, no caches. Both
are written here from the reward definitions, for comparison in the same process.
"""

from __future__ import annotations

import difflib
import re
import unicodedata

import regex
from nltk.stem.snowball import SnowballStemmer

from rewards.location import BOTTOM_WORDS, DIRECTION_WORDS, LEFT_WORDS, RIGHT_WORDS, TOP_WORDS
from rewards.vocabulary import DEFAULT_GROUPS

P_N = re.compile(r"\s*<think>(.+?)</think>\s*<answer>(.+?)</answer>\s*", re.DOTALL)
P_A = re.compile(
    r"\s*<think>(.+?)</think>\s*<location>(.+?)</location>\s*<type>(.+?)</type>\s*<answer>(.+?)</answer>\s*",
    re.DOTALL,
)
TAG_WORDS = ("<think>", "</think>", "<location>", "</location>", "<type>", "</type>", "<answer>", "</answer>")
STEMMER = SnowballStemmer("english")


def naive_pattern(text: str, pattern: re.Pattern) -> bool:
    m = pattern.fullmatch(text)
    if not m or any(not g.strip() or any(t in g for t in TAG_WORDS) for g in m.groups()):
        return False
    return pattern is P_A or ("<location>" not in text and "<type>" not in text)


def naive_tag(text: str, name: str) -> str | None:
    found = re.findall(rf"<{name}>(.*?)</{name}>", text, re.DOTALL)
    return found[0] if len(found) == 1 and text.count(f"<{name}>") == 1 else None


def naive_cells(text: str | None, rows: int = 3, columns: int = 3) -> set[int]:
    """T(text) on an R x C grid, straightforwardly: letter-run tokens one by one, clauses as
    lists of words, then each clause's direction words."""
    clauses: list[list[str]] = [[]]
    for token in regex.findall(r"\p{L}+|[,;/&]", (text or "").lower()):
        current = clauses[-1]
        if token in (",", ";", "/", "&", "and", "or"):
            clauses.append([])
        elif token == "as" and current[-2:] == ["as", "well"]:
            del current[-2:]
            clauses.append([])
        else:
            current.append(token)
    cells: set[int] = set()
    for words in clauses:
        present = DIRECTION_WORDS.intersection(words)
        if present:
            row_span = _span(rows, present & TOP_WORDS, present & BOTTOM_WORDS)
            column_span = _span(columns, present & LEFT_WORDS, present & RIGHT_WORDS)
            cells |= {r * columns + c + 1 for r in row_span for c in column_span}
    return cells


def _span(size: int, first: set, last: set) -> range:
    if first and last:
        return range(size)
    if first:
        return range(1)
    if last:
        return range(size - 1, size)
    return range((size - 1) // 2, size // 2 + 1)


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


# ------------------------------------------------------------------- authors' reward
def _search(name: str, text: str) -> str | None:
    found = re.search(rf"<{name}>(.*?)</{name}>", text)
    return found.group(1) if found else None


def _authors_norm(text: str) -> str:
    text = re.sub(r"\s+", " ", text.lower().strip())
    return re.sub(r"[^\w\s-]", "", text)


def _authors_keywords() -> list[tuple[str, str]]:
    table: dict[str, str] = {}
    for categories in DEFAULT_GROUPS.values():
        for category, terms in categories.items():
            for keyword in (category, *terms):
                table[_authors_norm(keyword)] = category
    return list(table.items())


def _authors_category(text: str) -> tuple[str | None, float]:
    keywords = _authors_keywords()
    for keyword, category in keywords:
        if keyword == text:
            return category, 1.0
    best, confidence = None, 0.0
    for keyword, category in keywords:
        if text in keyword or keyword in text:
            value = min(len(text), len(keyword)) / max(len(text), len(keyword))
            if value > confidence:
                best, confidence = category, value
    if best:
        return best, confidence
    for keyword, category in keywords:
        value = difflib.SequenceMatcher(None, text, keyword).ratio()
        if value >= 0.7 and value > confidence:
            best, confidence = category, value
    return best, confidence


def authors_type(predicted: str, actual: str) -> float:
    """The authors' type tiers on two stripped, lowercased type texts."""
    if not predicted or not actual:
        return 0.0
    group_of = {c: g for g, categories in DEFAULT_GROUPS.items() for c in categories}
    names = {"surface anomalies": "surface anomaly", "surface anomaly": "surface anomaly"}
    names |= {"structural anomalies": "structural anomaly", "structural anomaly": "structural anomaly"}
    p, g = _authors_norm(predicted), _authors_norm(actual)
    p_named, g_named = names.get(p), names.get(g)
    pc, pconf = _authors_category(p)
    gc, gconf = _authors_category(g)
    pg, gg = p_named or group_of.get(pc), g_named or group_of.get(gc)
    if pg and gg and pg != gg:
        return 0.0
    if (p_named and not g_named and gg == p_named) or (g_named and not p_named and pg == g_named):
        return 0.3
    if p == g:
        return 1.0
    if p in g or g in p:
        return 0.85
    if pc and gc and pc == gc:
        return 0.6 + (0.85 - 0.6) * min(pconf, gconf)
    if pc and gc and group_of[pc] == group_of[gc]:
        return 0.3
    similarity = difflib.SequenceMatcher(None, p, g).ratio()
    return similarity * 0.4 if similarity >= 0.7 else 0.0


def authors_position(text: str) -> int:
    text = text.lower().strip()
    column = -1 if "left" in text else 1 if "right" in text else 0
    row = -3 if ("top" in text or "upper" in text) else 3 if ("bottom" in text or "lower" in text) else 0
    return 5 + column + row


AUTHORS_NORMAL = re.compile(r"^(?!.*<location>)(?!.*<type>).*<think>.*?</think><answer>.*?</answer>.*$", re.DOTALL)
AUTHORS_ANOMALOUS = re.compile(
    r".*<think>.*?</think><location>.*?</location><type>.*?</type><answer>.*?</answer>.*", re.DOTALL
)


def authors_reference(completion: str, solution: str) -> tuple[float, float, float, float]:
    """(consistency, answer, location, type) as the authors' reward functions compute them
    for a completion text and a solution string; their total is c + a + (l + t) / 2."""
    found = _search("answer", solution)
    gold = (solution if found is None else found).strip().lower()
    if gold not in ("yes", "no"):
        raise ValueError(f"not a label: its answer is {gold!r}")  # their functions then misalign a batch
    anomalous = gold == "yes"
    consistency = float(bool((AUTHORS_ANOMALOUS if anomalous else AUTHORS_NORMAL).fullmatch(completion)))
    answer = _search("answer", completion)
    accuracy = float(answer is not None and answer.strip().lower() == gold)
    location = kind = 0.0
    if anomalous:
        predicted, labelled = _search("location", completion), _search("location", solution)
        if predicted is not None and labelled is not None:
            location = float(authors_position(predicted) == authors_position(labelled))
        predicted, labelled = _search("type", completion), _search("type", solution)
        if predicted is not None and labelled is not None:
            kind = authors_type(predicted.strip().lower(), labelled.strip().lower())
    return consistency, accuracy, location, kind
