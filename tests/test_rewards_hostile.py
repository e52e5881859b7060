"""A policy optimised against the scorer finds every loophole: property tests and
hostile inputs. Any string scores, within [0, max], and never raises."""

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rewards import Scorer, location_cells, matches_anomalous_pattern, matches_normal_pattern, type_score

SCORER = Scorer()
LABELS = [
    {"answer": "yes", "location": "top left", "type": "scratch"},
    {"answer": "yes", "cells": [5, 6], "type": "hole"},
    {"answer": "no"},
]
TAGS = ["<think>", "</think>", "<location>", "</location>", "<type>", "</type>", "<answer>", "</answer>"]
WORDS = ["yes", "no", "top", "left", "scratch", "hole", "and", " ", "\n", "\x00", "\u200b", "\u202e", "🙂", "\ud800"]

tag_soup = st.lists(st.sampled_from(TAGS + WORDS), max_size=40).map("".join)
any_text = st.one_of(st.text(max_size=200), tag_soup)


@settings(max_examples=300, deadline=None)
@given(completion=any_text, label_index=st.integers(0, len(LABELS) - 1))
def test_any_string_scores_within_bounds(completion, label_index):
    result = SCORER.score(completion, LABELS[label_index])
    assert 0 <= result.total <= result.max_total
    for part in (result.consistency, result.accuracy, result.location, result.type):
        assert 0 <= part <= 1
    assert result.total == pytest.approx(result.consistency + result.accuracy + result.location + result.type)


def _well_formed(think, location, kind, answer):
    return [("<think>", think), ("<location>", location), ("<type>", kind), ("<answer>", answer)]


content = st.text(alphabet=st.characters(blacklist_characters="<>"), min_size=1, max_size=30).filter(str.strip)
space = st.text(alphabet=" \t\n\r", max_size=3)


@settings(max_examples=200, deadline=None)
@given(
    think=content,
    location=content,
    kind=content,
    answer=st.sampled_from(["yes", "no", "Yes."]),
    gaps=st.lists(space, min_size=5, max_size=5),
    normal=st.booleans(),
    label_index=st.integers(0, 2),
)
def test_whitespace_between_tags_never_changes_a_score(think, location, kind, answer, gaps, normal, label_index):
    pairs = _well_formed(think, location, kind, answer)
    if normal:
        pairs = [pairs[0], pairs[3]]
    tight = "".join(f"{o}{c}{o.replace('<', '</')}" for o, c in pairs)
    spaced = gaps[0] + "".join(f"{o}{c}{o.replace('<', '</')}{g}" for (o, c), g in zip(pairs, gaps[1:]))
    assert SCORER.score(tight, LABELS[label_index]) == SCORER.score(spaced, LABELS[label_index])


@settings(max_examples=300, deadline=None)
@given(completion=any_text)
def test_a_completion_never_matches_both_patterns(completion):
    assert not (matches_anomalous_pattern(completion) and matches_normal_pattern(completion))


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=100), rows=st.integers(1, 6), columns=st.integers(1, 6))
def test_location_cells_stay_on_the_grid(text, rows, columns):
    assert location_cells(text, (rows, columns)) <= set(range(1, rows * columns + 1))


@settings(max_examples=200, deadline=None)
@given(prediction=st.text(max_size=60), label=st.text(max_size=60))
def test_type_score_in_unit_interval(prediction, label):
    assert 0 <= type_score(prediction, label) <= 1


MB = 1_000_000
HOSTILE = [
    "<think>" * (MB // 7),  # repeated opening tag
    "<think>" + "a" * MB + "</think><answer>yes</answer>",  # a huge but valid think
    "".join(TAGS) * (MB // 60),  # every tag, over and over
    "<" * MB,  # almost-tags
    "<answer>" + "yes " * (MB // 4) + "</answer>",
    "<think>t</think><location>" + "top and " * (MB // 8) + "</location><type>x</type><answer>yes</answer>",
    "<think>t</think><location>l</location><type>" + "scratch hole " * (MB // 13) + "</type><answer>yes</answer>",
    "<think>t</think><location>l</location><type>" + "x" * MB + "</type><answer>yes</answer>",
    "\x00\ud800\u200b\u202e🙂" * (MB // 5),
]


@pytest.mark.parametrize("completion", HOSTILE, ids=lambda c: repr(c[:24]))
def test_megabyte_completions_score_in_linear_time(completion):
    # A guard, not a benchmark: backtracking regexes take minutes here (32 KB already
    # costs them half a second); a linear scan takes a fraction of a second.
    start = time.perf_counter()
    result = SCORER.score(completion, LABELS[0])
    assert time.perf_counter() - start < 5
    assert 0 <= result.total <= 4


def test_loopholes_from_the_authors_code_are_closed():
    label = {"answer": "yes", "location": "center", "type": "scratch"}
    base = "<think>t</think><location>{}</location><type>{}</type><answer>yes</answer>"
    # An unparseable location does not default to center.
    assert SCORER.score(base.format("somewhere odd", "scratch"), label).location == 0
    # A list of guesses earns no type reward.
    assert SCORER.score(base.format("center", "scratch, hole, stain, wear"), label).type == 0
    # `bright` is not `right`.
    assert location_cells("bright") == frozenset()
    # Naming every cell is not the label's cell.
    assert SCORER.score(base.format("top bottom left right", "scratch"), label).location == 0
    # A closing `</answer>` only, or an answer hidden in think, gives no answer.
    assert SCORER.score("<think><answer>yes</answer></think>", label).answer == "yes"
    assert SCORER.score("<think><answer>yes</answer></think>", label).consistency == 0
