"""Anomaly-type vocabulary: terms → categories → groups, and text normalisation.

The default is the paper's 8 coarse types with synonyms in 2 groups (docs/reward.md
"Type"). Users replace it with a dict or a JSON/YAML file of the same shape::

    {"groups": {"surface anomaly": {"Scratch": ["surface scratch", "scratch mark"], …}, …}}

Category names are terms of their own category; group names (and their plurals, by
stemming) are recognised as group names.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import regex
from nltk.stem.snowball import SnowballStemmer

DEFAULT_GROUPS: dict[str, dict[str, list[str]]] = {
    "surface anomaly": {
        "Contamination": ["surface contamination", "stain", "dirt", "impurity", "color anomaly"],
        "Presence of foreign objects": [
            "foreign object",
            "foreign body",
            "debris",
            "contaminant object",
            "extraneous material",
            "foreign element",
            "foreign matter",
            "unwanted object",
        ],
        "Scratch": ["surface scratch", "scratch mark", "linear scratch", "score mark", "linear anomaly"],
        "Missing parts": ["missing part", "surface notch", "notch", "gap", "chip", "surface discontinuity"],
    },
    "structural anomaly": {
        "Deformation": [
            "shape distortion",
            "warping",
            "bending",
            "twisting",
            "shape deviation",
            "geometric distortion",
            "irregularity",
            "bent component",
        ],
        "Hole": [
            "opening",
            "perforation",
            "puncture",
            "cavity",
            "void",
            "aperture",
            "penetration defect",
            "through-hole",
        ],
        "Damage": [
            "structural damage",
            "breakage",
            "fracture",
            "rupture",
            "deterioration",
            "material damage",
            "surface damage",
        ],
        "Abrasion": ["wear", "grinding damage", "surface erosion", "wear mark", "surface wear"],
    },
}

_STEMMER = SnowballStemmer("english")
# Punctuation, symbols (emoji included) and other/format characters (NUL, zero-width,
# bidi marks, lone surrogates) are dropped; whitespace was folded to spaces before.
_DROP_RE = regex.compile(r"[\p{P}\p{S}\p{C}]+")
_CACHE_LIMIT = 1024  # longer texts are normalised without entering the cache


@lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    return _STEMMER.stem(word)


def _normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower().replace("-", " ").replace("_", " ")
    text = _DROP_RE.sub("", " ".join(text.split()))
    return " ".join(_stem(word) for word in text.split())


_normalise_cached = lru_cache(maxsize=65536)(_normalise)


def normalise_type(text: str | None) -> str:
    """NFKC, lowercase, `-`/`_` to spaces, punctuation dropped, words stemmed.

    >>> normalise_type("Scratches"), normalise_type("foreign-objects"), normalise_type("Dirt!")
    ('scratch', 'foreign object', 'dirt')
    """
    if not text:
        return ""
    return _normalise_cached(text) if len(text) <= _CACHE_LIMIT else _normalise(text)


@dataclass(frozen=True)
class Term:
    text: str  # normalised
    words: tuple[str, ...]
    category: str


@dataclass
class Vocabulary:
    """Groups of categories of terms, with the indexes the type matcher needs."""

    groups: dict[str, dict[str, list[str]]] = field(default_factory=lambda: DEFAULT_GROUPS)

    def __post_init__(self) -> None:
        if not isinstance(self.groups, Mapping) or not self.groups:
            raise ValueError("vocabulary: 'groups' must be a non-empty mapping of group -> categories")
        self.term_category: dict[str, str] = {}
        self.category_group: dict[str, str] = {}
        self.group_names: dict[str, str] = {}
        for group, categories in self.groups.items():
            if not isinstance(group, str) or not normalise_type(group):
                raise ValueError(f"vocabulary: group name {group!r} is empty or not text")
            if not isinstance(categories, Mapping) or not categories:
                raise ValueError(f"vocabulary: group {group!r} must map category names to term lists")
            self.group_names[normalise_type(group)] = group
            for category, terms in categories.items():
                if category in self.category_group:
                    raise ValueError(f"vocabulary: category {category!r} appears in two groups")
                if isinstance(terms, str) or not isinstance(terms, (list, tuple)):
                    raise ValueError(f"vocabulary: category {category!r} must have a list of terms")
                self.category_group[category] = group
                for term in [category, *terms]:
                    self._add_term(term, category)
        self.terms: list[Term] = [
            Term(text, tuple(text.split()), category) for text, category in self.term_category.items()
        ]
        self.terms_by_first_word: dict[str, list[Term]] = {}
        for term in sorted(self.terms, key=lambda t: -len(t.words)):  # longest first: the matcher relies on it
            self.terms_by_first_word.setdefault(term.words[0], []).append(term)
        self.term_texts: list[str] = [term.text for term in self.terms]
        self.longest_term_words = max(len(term.words) for term in self.terms)

    def _add_term(self, term: Any, category: str) -> None:
        if not isinstance(term, str) or not normalise_type(term):
            raise ValueError(f"vocabulary: category {category!r} has an empty or non-text term {term!r}")
        text = normalise_type(term)
        if text in self.group_names:
            raise ValueError(f"vocabulary: term {term!r} is also a group name")
        other = self.term_category.setdefault(text, category)
        if other != category:
            raise ValueError(f"vocabulary: term {term!r} belongs to both {other!r} and {category!r}")

    @classmethod
    def load(cls, source: Vocabulary | Mapping[str, Any] | str | Path | None) -> Vocabulary:
        """A vocabulary from None (the default), a dict, or a JSON/YAML file path."""
        if source is None:
            return cls()
        if isinstance(source, Vocabulary):
            return source
        if isinstance(source, (str, Path)):
            source = read_mapping(Path(source))
        if not isinstance(source, Mapping) or "groups" not in source:
            raise ValueError("vocabulary: expected a mapping with a 'groups' key")
        return cls(groups=dict(source["groups"]))


def read_mapping(path: Path) -> Any:
    """Parse a JSON or YAML file (YAML needs PyYAML, imported only here)."""
    if not path.is_file():
        raise ValueError(f"file not found: {path}")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError as error:  # pragma: no cover - depends on the install
            raise ValueError(f"{path}: reading YAML needs PyYAML (pip install pyyaml)") from error
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ValueError(f"{path}: invalid YAML: {error}") from error
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: invalid JSON: {error}") from error
