"""SC-GRPO reward scorer for IAD-R1 (pure Python: regex, rapidfuzz, nltk).

>>> from rewards import Scorer
>>> Scorer().score("<think>uniform texture</think><answer>no</answer>", {"answer": "no"}).total
2.0
"""

from .chat import completion_text
from .labels import Label, parse_label
from .location import cells_to_text, location_cells
from .patterns import extract_answer, matches_anomalous_pattern, matches_normal_pattern
from .result import PARTS, ScoreResult, Weights
from .scorer import PRESETS, SCORER_CONFIG_ENV, GroupScore, Scorer, group_advantages
from .type_match import SAME_CATEGORY_RULES, TypeMatch, TypeMatcher, TypeRuleScores, type_score
from .vocabulary import Vocabulary, normalise_type

__all__ = [
    "PARTS",
    "PRESETS",
    "SAME_CATEGORY_RULES",
    "SCORER_CONFIG_ENV",
    "GroupScore",
    "Label",
    "ScoreResult",
    "Scorer",
    "TypeMatch",
    "TypeMatcher",
    "TypeRuleScores",
    "Vocabulary",
    "Weights",
    "cells_to_text",
    "completion_text",
    "extract_answer",
    "group_advantages",
    "location_cells",
    "matches_anomalous_pattern",
    "matches_normal_pattern",
    "normalise_type",
    "parse_label",
    "type_score",
]
