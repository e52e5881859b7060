"""docs/reward.md "Inputs": equal labels score equally, whatever object or container carries
them; labels are parsed once per distinct value, in a bounded cache keyed by content."""

import json

import numpy as np
import pandas as pd
import pytest

import rewards.scorer
from benchmarks.corpus import rollout_corpus
from rewards import Scorer

COMPLETIONS, LABELS = rollout_corpus(600, seed=3)


def fresh_dicts(labels):
    return [json.loads(json.dumps(label)) for label in labels]


def solutions(labels):
    return [
        "<think>t</think><answer>no</answer>"
        if label["answer"] == "no"
        else f"<think>t</think><location>{label['location']}</location><type>{label['type']}</type><answer>yes</answer>"
        for label in labels
    ]


LABEL_CONTAINERS = [
    ("list of shared dicts", list),
    ("tuple", tuple),
    ("list of fresh dicts", fresh_dicts),
    ("JSON strings", lambda labels: [json.dumps(label) for label in labels]),
    # Iterating a numpy string array makes a new object per item: the `id()` cache read one
    # item's label for another (1,755 of 3,000 wrong).
    ("numpy string array of JSON", lambda labels: np.array([json.dumps(label) for label in labels])),
    ("numpy object array of dicts", lambda labels: np.array(fresh_dicts(labels), dtype=object)),
    ("pandas Series of JSON", lambda labels: pd.Series([json.dumps(label) for label in labels])),
    ("pandas Series of dicts", lambda labels: pd.Series(fresh_dicts(labels))),
    ("generator of fresh dicts", lambda labels: (json.loads(json.dumps(label)) for label in labels)),
    ("solution strings", solutions),
]


@pytest.mark.parametrize("preset", ["default", "authors"])
@pytest.mark.parametrize(("name", "container"), LABEL_CONTAINERS, ids=[c[0] for c in LABEL_CONTAINERS])
def test_every_container_scores_as_one_by_one(preset, name, container):
    one_by_one = [Scorer(preset=preset).score(c, label) for c, label in zip(COMPLETIONS, LABELS)]
    batched = Scorer(preset=preset).score_batch(COMPLETIONS, container(LABELS))
    assert [r.as_dict() for r in batched] == [r.as_dict() for r in one_by_one]


@pytest.mark.parametrize("preset", ["default", "authors"])
def test_one_scorer_reading_fresh_objects_one_at_a_time(preset):
    """Each item of a numpy array is a new object, freed after use: Python reuses its id for
    the next one, so a cache keyed by identity reads one item's label for another."""
    scorer = Scorer(preset=preset)
    array = np.array([json.dumps(label) for label in LABELS])
    got = [scorer.score(completion, label) for completion, label in zip(COMPLETIONS, array)]
    assert got == [Scorer(preset=preset).score(c, label) for c, label in zip(COMPLETIONS, LABELS)]


@pytest.mark.parametrize(
    "container", [tuple, np.array, pd.Series, lambda items: (c for c in items)], ids=["tuple", "numpy", "pandas", "gen"]
)
def test_completions_in_any_container(container):
    expected = Scorer().score_batch(COMPLETIONS, LABELS)
    assert Scorer().score_batch(container(COMPLETIONS), LABELS) == expected


def test_each_distinct_label_is_parsed_once(monkeypatch):
    scorer = Scorer()
    parsed = []
    parse = scorer.rules.parse_label
    monkeypatch.setattr(scorer.rules, "parse_label", lambda label: parsed.append(label) or parse(label))
    labels = [json.dumps(label) for label in LABELS]  # a new string object per sample, as OpenRLHF sends
    scorer.score_batch(COMPLETIONS, labels)
    scorer.score_batch(COMPLETIONS, fresh_dicts(LABELS))
    distinct = {json.dumps(label) for label in LABELS}
    assert len(parsed) == 2 * len(distinct) < len(LABELS) / 4  # once as text, once as a dict


def test_the_cache_is_bounded_and_stays_correct(monkeypatch):
    monkeypatch.setattr(rewards.scorer, "LABEL_CACHE_SIZE", 8)
    scorer = Scorer()
    labels = [{"answer": "yes", "cells": [cell], "type": "scratch"} for cell in range(1, 10)] * 5
    completion = "<think>t</think><location>top left</location><type>scratch</type><answer>yes</answer>"
    results = scorer.score_batch([completion] * len(labels), labels)
    assert len(scorer._labels) <= 8
    assert [r.location for r in results] == [float(label["cells"] == [1]) for label in labels]


def test_values_of_other_types_are_other_keys():
    """`1 == True == 1.0` in Python, but only 1 is a cell: a cached valid label never
    answers for an invalid one."""
    scorer = Scorer()
    assert scorer.parse_label({"answer": "yes", "cells": [1]}).cells == {1}
    for bad in ([True], [1.0]):
        with pytest.raises(ValueError, match="integers"):
            scorer.parse_label({"answer": "yes", "cells": bad})


def test_a_mutated_label_is_read_anew():
    scorer = Scorer()
    label = {"answer": "no"}
    completion = "<think>t</think><answer>no</answer>"
    assert scorer.score(completion, label).total == 2
    label["answer"] = "yes"  # the same object, another content
    assert scorer.score(completion, label).total == 0


def test_numpy_cells_are_cells():
    label = {"answer": "yes", "cells": np.array([1, 5], dtype=np.int64), "type": "hole"}
    assert Scorer().parse_label(label).cells == {1, 5}
