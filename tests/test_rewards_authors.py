"""Preset `authors`: the reward of the authors' released SC-GRPO code (Yanhui-Lee/IAD-R1,
`train/stage_rl/reward.py` and `reward_process/`), reproduced in linear time.

The expected parts of every case below were computed by running the authors' own reward
functions on the same completion and solution string (their `consistency_reward`,
`accuracy_reward`, `map_location_to_region` and `AnomalyRewardCalculator`); their
trainer's total is consistency + accuracy, accuracy = answer + (location + type) / 2.
"""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.baselines import authors_reference
from rewards import Scorer

SCORER = Scorer(preset="authors")
T = "<think>I see a mark.</think>"


def A(loc, typ, ans="yes", think=T):
    return f"{think}<location>{loc}</location><type>{typ}</type><answer>{ans}</answer>"


def S(loc="top left", typ="scratch", ans="yes"):
    return f"<think>gt</think><location>{loc}</location><type>{typ}</type><answer>{ans}</answer>"


N_SOL = "<think>gt</think><answer>no</answer>"
# (what, completion, solution, consistency, answer, location, type) as their code computes them
CASES = [
    ("all right", A("top left", "scratch"), S(), 1.0, 1.0, 1.0, 1.0),
    ("wrong answer keeps location and type credit", A("top left", "scratch", "no"), S(), 1.0, 0.0, 1.0, 1.0),
    ("missed anomaly in the normal pattern", T + "<answer>no</answer>", S(), 0.0, 0.0, 0.0, 0.0),
    ("no direction word means the centre", A("somewhere on the part", "scratch"), S("center"), 1.0, 1.0, 1.0, 1.0),
    ("an empty location tag is the centre", A("", "scratch"), S("middle"), 1.0, 1.0, 1.0, 1.0),
    ("bright contains right", A("bright spot", "scratch"), S("right side"), 1.0, 1.0, 1.0, 1.0),
    ("stopper contains top", A("the stopper", "scratch"), S("top"), 1.0, 1.0, 1.0, 1.0),
    ("flower contains lower", A("a flower pattern", "scratch"), S("bottom"), 1.0, 1.0, 1.0, 1.0),
    (
        "left wins over right, top over bottom",
        A("upper left and bottom right", "scratch"),
        S("top left"),
        1.0,
        1.0,
        1.0,
        1.0,
    ),
    ("from left to right is left", A("from left to right", "scratch"), S("left"), 1.0, 1.0, 1.0, 1.0),
    ("top equals upper", A("top", "scratch"), S("upper middle"), 1.0, 1.0, 1.0, 1.0),
    ("wrong cell", A("bottom right", "scratch"), S("top left"), 1.0, 1.0, 0.0, 1.0),
    ("plural is a substring, not exact", A("top left", "scratches"), S(), 1.0, 1.0, 1.0, 0.85),
    ("two exact terms of one category", A("top left", "stain"), S(typ="dirt"), 1.0, 1.0, 1.0, 0.85),
    ("fuzzy category", A("top left", "scrach"), S(), 1.0, 1.0, 1.0, 0.8307692307692307),
    (
        "difflib fuzzy outside the vocabulary",
        A("top left", "corosion"),
        S(typ="corrosion"),
        1.0,
        1.0,
        1.0,
        0.3764705882352941,
    ),
    ("crack against fracture", A("top left", "crack"), S(typ="fracture"), 1.0, 1.0, 1.0, 0.0),
    ("group name against its category", A("top left", "surface anomalies"), S(), 1.0, 1.0, 1.0, 0.3),
    ("category against a group name", A("top left", "scratch"), S(typ="surface anomaly"), 1.0, 1.0, 1.0, 0.3),
    ("group mismatch", A("top left", "hole"), S(), 1.0, 1.0, 1.0, 0.0),
    ("same group", A("top left", "stain"), S(typ="debris"), 1.0, 1.0, 1.0, 0.3),
    ("a list of guesses holds the label", A("top left", "scratch, hole or stain"), S(), 1.0, 1.0, 1.0, 0.85),
    ("punctuation only is in every text", A("top left", "..."), S(), 1.0, 1.0, 1.0, 0.85),
    ("hyphen kept", A("top left", "through-hole"), S(typ="hole"), 1.0, 1.0, 1.0, 0.85),
    ("case folded", A("top left", "Hole"), S(typ="hole"), 1.0, 1.0, 1.0, 1.0),
    ("synonym of Hole", A("top left", "perforation"), S(typ="hole"), 1.0, 1.0, 1.0, 0.85),
    ("bent and bending", A("top left", "bent"), S(typ="bending"), 1.0, 1.0, 1.0, 0.6714285714285714),
    ("wear and grinding damage", A("top left", "wear"), S(typ="grinding damage"), 1.0, 1.0, 1.0, 0.85),
    ("damage inside grinding damage", A("top left", "damage"), S(typ="grinding damage"), 1.0, 1.0, 1.0, 0.85),
    ("foreign objects", A("top left", "foreign objects"), S(typ="foreign object"), 1.0, 1.0, 1.0, 0.85),
    ("full-width letters are not folded", A("top left", "ｓｃｒａｔｃｈ"), S(), 1.0, 1.0, 1.0, 0.0),
    ("no type tag in the completion", T + "<location>top left</location><answer>yes</answer>", S(), 0.0, 1.0, 1.0, 0.0),
    (
        "no type tag in the label",
        A("top left", "scratch"),
        "<think>gt</think><location>top left</location><answer>yes</answer>",
        1.0,
        1.0,
        1.0,
        0.0,
    ),
    (
        "no location tag in the label",
        A("top left", "scratch"),
        "<think>gt</think><type>scratch</type><answer>yes</answer>",
        1.0,
        1.0,
        0.0,
        1.0,
    ),
    ("empty location tag in the label", A("center", "scratch"), S(""), 1.0, 1.0, 1.0, 1.0),
    ("label answer in capitals", A("top left", "scratch"), S(ans="Yes"), 1.0, 1.0, 1.0, 1.0),
    ("plain yes as the solution", A("top left", "scratch"), "yes", 1.0, 1.0, 0.0, 0.0),
    (
        "newlines inside think",
        A("top left", "scratch", think="<think>line one\nline two</think>"),
        S(),
        1.0,
        1.0,
        1.0,
        1.0,
    ),
    (
        "space between tags breaks their pattern",
        T + " <location>top left</location><type>scratch</type><answer>yes</answer>",
        S(),
        0.0,
        1.0,
        1.0,
        1.0,
    ),
    ("text around the tags", "Sure. " + A("top left", "scratch") + " Done.", S(), 1.0, 1.0, 1.0, 1.0),
    ("a repeated think", "<think>a</think>" + A("top left", "scratch"), S(), 1.0, 1.0, 1.0, 1.0),
    (
        "tags out of order",
        "<think>x</think><type>scratch</type><location>top left</location><answer>yes</answer>",
        S(),
        0.0,
        1.0,
        1.0,
        1.0,
    ),
    ("normal, right", T + "<answer>no</answer>", N_SOL, 1.0, 1.0, 0.0, 0.0),
    (
        "normal, location inside think",
        "<think>nothing at the <location>top</location></think><answer>no</answer>",
        N_SOL,
        0.0,
        1.0,
        0.0,
        0.0,
    ),
    ("normal, text around", "Sure! " + T + "<answer>no</answer> Done.", N_SOL, 1.0, 1.0, 0.0, 0.0),
    ("normal, answer with a dot", T + "<answer>No.</answer>", N_SOL, 1.0, 0.0, 0.0, 0.0),
    ("normal, answer padded in capitals", T + "<answer>  NO </answer>", N_SOL, 1.0, 1.0, 0.0, 0.0),
    ("normal, first of two answers counts", T + "<answer>yes</answer><answer>no</answer>", N_SOL, 1.0, 0.0, 0.0, 0.0),
    ("normal, answer across a newline", T + "<answer>\nno</answer>", N_SOL, 1.0, 0.0, 0.0, 0.0),
    (
        "normal, a later answer on the next line",
        T + "<answer>\n</answer><answer>no</answer>",
        N_SOL,
        1.0,
        1.0,
        0.0,
        0.0,
    ),
    ("normal, overkill", A("top left", "scratch"), N_SOL, 0.0, 0.0, 0.0, 0.0),
    ("normal, wrong answer in the normal pattern", T + "<answer>yes</answer>", N_SOL, 1.0, 0.0, 0.0, 0.0),
    ("normal, nothing", "", N_SOL, 0.0, 0.0, 0.0, 0.0),
    ("normal, think without answer", "<think>fine</think>", N_SOL, 0.0, 0.0, 0.0, 0.0),
]


def their_total(c, a, location, kind):
    """Their trainer's sum, in their order of operations."""
    return c + ((0.0 + kind + location) / 2.0 + a)


@pytest.mark.parametrize(
    ("name", "completion", "solution", "c", "a", "location", "kind"), CASES, ids=[c[0] for c in CASES]
)
def test_the_authors_reward(name, completion, solution, c, a, location, kind):
    result = SCORER.score(completion, solution)
    assert (result.consistency, result.accuracy, result.location, result.type) == (c, a, location, kind)
    assert result.total == pytest.approx(their_total(c, a, location, kind), abs=1e-12)
    assert result.max_total == (3.0 if result.gated else 2.0)


def test_at_least_forty_cases_and_every_quirk():
    assert len(CASES) >= 40
    results = {name: SCORER.score(completion, solution) for name, completion, solution, *_ in CASES}
    assert results["wrong answer keeps location and type credit"].total == 2.0  # partial credit
    assert results["no direction word means the centre"].location == 1.0  # "center" by default
    assert results["bright contains right"].predicted_cells == {6}  # substring direction words
    assert results["difflib fuzzy outside the vocabulary"].type_rule == "fuzzy"  # difflib tiers
    assert max(r.total for r in results.values()) == 3.0  # an anomaly earns at most 3 ...
    assert results["normal, right"].total == 2.0  # ... a normal sample 2


def dict_label(solution):
    """The dict a solution string stands for (only for the plain S(...) solutions)."""
    return {
        "answer": solution.split("<answer>")[1].split("</answer>")[0],
        "location": solution.split("<location>")[1].split("</location>")[0],
        "type": solution.split("<type>")[1].split("</type>")[0],
    }


DICT_CASES = [case for case in CASES if case[2].startswith("<think>gt</think><location>") and "<type>" in case[2]]


@pytest.mark.parametrize(
    ("name", "completion", "solution", "c", "a", "location", "kind"), DICT_CASES, ids=[c[0] for c in DICT_CASES]
)
def test_a_dict_label_scores_as_its_solution_string(name, completion, solution, c, a, location, kind):
    label = dict_label(solution)
    if not label["location"]:
        return  # an empty location tag (the centre) has no dict form: a dict's empty location is none
    expected = SCORER.score(completion, solution)
    assert SCORER.score(completion, label) == expected
    assert SCORER.score(completion, json.dumps(label)) == expected
    assert SCORER.score([{"role": "assistant", "content": completion}], label) == expected


CELL_LABELS = [
    # (label, the cell their arithmetic gives it)
    ({"answer": "yes", "cells": [1], "type": "hole"}, {1}),
    ({"answer": "yes", "cells": [5], "type": "hole"}, {5}),
    ({"answer": "yes", "cells": [8], "type": "hole"}, {8}),
    ({"answer": "yes", "location": [3], "type": "hole"}, {3}),
    ({"answer": "yes", "cells": [1, 9], "type": "hole"}, {1}),  # "top left and bottom right": left, then top
    ({"answer": "yes", "cells": [], "location": "", "type": "hole"}, set()),  # no location: no credit
    ({"answer": "yes", "type": "hole"}, set()),
]


@pytest.mark.parametrize(("label", "cells"), CELL_LABELS)
def test_explicit_cells_are_read_as_their_words(label, cells):
    assert SCORER.parse_label(label).cells == cells
    result = SCORER.score(A("top left", "hole"), label)
    assert result.location == float(cells == {1})


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"preset": "authors", "grid": [4, 4]}, "no grid"),
        ({"preset": "authors", "vocabulary": {"groups": {"g": {"C": ["c"]}}}}, "no vocabulary"),
        ({"preset": "authors", "type_scores": {"exact": 0.9}}, "no type_scores"),
        ({"preset": "theirs"}, "preset must be one of"),
    ],
)
def test_what_the_preset_cannot_change(config, message):
    with pytest.raises(ValueError, match=message):
        Scorer.from_config(config)


def test_weights_and_groups():
    heavy = Scorer.from_config({"preset": "authors", "weights": {"type": 1.0}})
    assert (heavy.weights.location, heavy.weights.type) == (0.5, 1.0)
    assert heavy.score(A("top left", "scratch"), S()).total == 3.5
    group = SCORER.score_group([A("top left", "scratch"), A("top left", "scratch", "no"), ""], S())
    assert [s.total for s in group.scores] == [3.0, 2.0, 0.0] and group.has_signal


# The linear finds against the straightforward regexes and difflib, on tag soup with newlines.
PIECES = ["<think>", "</think>", "<location>", "</location>", "<type>", "</type>", "<answer>", "</answer>"]
PIECES += ["yes", "no", " YES ", "\n", "top", "left", "bright", "scratch", "hole", "stain", "surface anomalies"]
PIECES += ["...", "crack", "x", " ", "through-hole", "grinding damage"]
soup = st.lists(st.sampled_from(PIECES), max_size=30).map("".join)
solution_soup = st.tuples(soup, st.sampled_from(["yes", "no", "Yes", " no "]), soup).map(
    lambda parts: f"{parts[0]}<answer>{parts[1]}</answer>{parts[2]}".replace("\n", " ")
)


@settings(max_examples=400, deadline=None)
@given(completion=soup, solution=solution_soup)
def test_same_parts_as_the_straightforward_reading(completion, solution):
    try:
        expected = authors_reference(completion, solution)
    except ValueError:  # the first answer on one line is not yes/no: not a label
        with pytest.raises(ValueError, match="answer must be 'yes' or 'no'"):
            SCORER.score(completion, solution)
        return
    result = SCORER.score(completion, solution)
    assert (result.consistency, result.accuracy, result.location, result.type) == expected


LABEL = {"answer": "yes", "location": "top left", "type": "scratch"}


def W(loc="top left", typ="scratch", ans="yes", sep=""):
    return (
        f"<think>a thin line</think>{sep}<location>{loc}</location>{sep}<type>{typ}</type>{sep}<answer>{ans}</answer>"
    )


# docs/reward.md, "Where the two presets differ": (completion, label, default parts, authors parts)
PRESET_DIFFERENCES = [
    (W(), LABEL, (1, 1, 1, 1), (1, 1, 1, 1)),
    (W(ans="no"), LABEL, (1, 0, 0, 0), (1, 0, 1, 1)),
    (W(loc="somewhere"), {**LABEL, "location": "center"}, (1, 1, 0, 1), (1, 1, 1, 1)),
    (W(loc="bright spot"), {**LABEL, "location": "right side"}, (1, 1, 0, 1), (1, 1, 1, 1)),
    (W(loc="top left and bottom right"), LABEL, (1, 1, 0, 1), (1, 1, 1, 1)),
    (W(typ="scratches"), LABEL, (1, 1, 1, 1), (1, 1, 1, 0.85)),
    (W(typ="scratch, hole or stain"), LABEL, (1, 1, 1, 0), (1, 1, 1, 0.85)),
    (W(typ="..."), LABEL, (1, 1, 1, 0), (1, 1, 1, 0.85)),
    (W(sep=" "), LABEL, (1, 1, 1, 1), (0, 1, 1, 1)),
    ("Sure. " + W(), LABEL, (0, 1, 1, 1), (1, 1, 1, 1)),
    (W(ans="Yes."), LABEL, (1, 1, 1, 1), (1, 0, 1, 1)),
    (W() + "<answer>no</answer>", LABEL, (0, 0, 0, 0), (1, 1, 1, 1)),
    ("<think>fine</think><answer>No.</answer>", {"answer": "no"}, (1, 1, 0, 0), (1, 0, 0, 0)),
]


@pytest.mark.parametrize(("completion", "label", "default", "authors"), PRESET_DIFFERENCES)
def test_where_the_presets_differ(completion, label, default, authors):
    for scorer, parts in ((Scorer(), default), (SCORER, authors)):
        result = scorer.score(completion, label)
        assert (result.consistency, result.accuracy, result.location, result.type) == parts
