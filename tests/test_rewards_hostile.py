"""A policy optimised against the scorer finds every loophole: property tests and
hostile inputs. Any string scores, within [0, max], and never raises."""

import json
import time

import numpy as np
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


def _time(function) -> float:
    """The CPU time `function` takes in this process: what other processes on the machine
    do (test workers, a pip install beside them) does not count in it, as it does in wall
    time (which made a linear 10 read as 33 on a loaded 2-core machine)."""
    start = time.process_time()
    function()
    return time.process_time() - start


def growth(make, score, small: int = 100_000) -> float:
    """How much longer input of 10× the size takes (best of 3, each on fresh state, in CPU
    time): about 10 for linear work, about 100 for quadratic. A ratio measured in one run,
    so it holds on a machine of any speed."""
    timings = []
    for size in (small, 10 * small):
        item = make(size)
        timings.append(min(_time(lambda item=item: score(item)) for _ in range(3)))
    return timings[1] / max(timings[0], 1e-4)


def repeat(unit: str, size: int) -> str:
    return unit * (size // len(unit))


WRAP = "<think>t</think><location>{}</location><type>{}</type><answer>yes</answer>"
# Inputs of a given size in characters, each aimed at one field or one search.
HOSTILE_COMPLETIONS = {
    "repeated opening tag": lambda n: repeat("<think>", n),
    "huge valid think": lambda n: "<think>" + "a" * n + "</think><answer>yes</answer>",
    "every tag over and over": lambda n: repeat("".join(TAGS), n),
    "almost-tags": lambda n: "<" * n,
    "answer tags without closers, one per line": lambda n: repeat("<answer>yes\n", n),
    "openers with a closer at the end": lambda n: repeat("<answer><type><location>", n) + "</answer>",
    "huge answer": lambda n: "<answer>" + repeat("yes ", n) + "</answer>",
    "location of clauses": lambda n: WRAP.format(repeat("top and ", n), "x"),
    "location as well as": lambda n: WRAP.format(repeat("left as well as ", n), "x"),
    "non-ASCII location": lambda n: WRAP.format(repeat("oben ü links ", n), "x"),
    "type of terms": lambda n: WRAP.format("l", repeat("scratch hole ", n)),
    "type of one word": lambda n: WRAP.format("l", "x" * n),
    "type of grinding damage": lambda n: WRAP.format("l", repeat("grinding damage ", n)),
    "control characters": lambda n: repeat("\x00\ud800\u200b\u202e🙂", n),
}


@pytest.mark.parametrize("preset", ["default", "authors"])
@pytest.mark.parametrize("name", sorted(HOSTILE_COMPLETIONS))
def test_hostile_completions_score_in_linear_time(name, preset):
    # Backtracking regexes take minutes on some of these (32 KB already costs them half a
    # second); every field here is scanned in time linear in its length.
    scorer = Scorer(preset=preset)
    label = {"answer": "yes", "location": "top left", "type": "scratch"}
    assert growth(HOSTILE_COMPLETIONS[name], lambda text: scorer.score(text, label)) < 30
    result = scorer.score(HOSTILE_COMPLETIONS[name](1_000_000), label)
    assert 0 <= result.total <= result.max_total


HOSTILE_LABELS = {
    "location text": lambda n: {"answer": "yes", "location": repeat("top and ", n), "type": "scratch"},
    "type text": lambda n: {"answer": "yes", "location": "top", "type": repeat("scratch dent ", n)},
    "type of one word": lambda n: {"answer": "yes", "location": "top", "type": "y" * n},
    "solution string": lambda n: WRAP.format(repeat("left ", n), repeat("hole ", n)),
    "JSON text": lambda n: '{"answer": "yes", "type": "' + repeat("wear ", n) + '"}',
    "cells": lambda n: {"answer": "yes", "cells": [1, 2, 3] * (n // 9)},
}


@pytest.mark.parametrize("preset", ["default", "authors"])
@pytest.mark.parametrize("name", sorted(HOSTILE_LABELS))
def test_huge_labels_score_in_linear_time(name, preset):
    completion = WRAP.format("top left", "scratch")
    # A fresh scorer per call: labels are cached once parsed.
    assert growth(HOSTILE_LABELS[name], lambda label: Scorer(preset=preset).score(completion, label)) < 30


def test_megabyte_types_on_both_sides():
    """A 1 MB predicted type against a 1 MB label type took 27 s: two similar texts that
    the vocabulary does not know reach the fuzzy rule, whose ratio is quadratic."""
    for preset in ("default", "authors"):
        scorer = Scorer(preset=preset)

        def both(n, scorer=scorer):
            label = {"answer": "yes", "location": repeat("top ", n), "type": repeat("qwertz ", n)}
            result = scorer.score(WRAP.format(repeat("left ", n), repeat("qwerty ", n)), label)
            assert result.type_rule == "none"  # past the length bound: as if no similarity reached 0.7
            return result

        assert growth(lambda n: n, both) < 30
        assert scorer.score(WRAP.format("l", "qwerty"), {"answer": "yes", "type": "qwertz"}).type_rule == "fuzzy"


def rare_characters(n: int, seed: int) -> str:
    """Text of 2,000 distinct letters, none frequent: difflib's worst case (seconds at 16 KB)."""
    import random

    return "".join(random.Random(seed).choices([chr(0x4E00 + i) for i in range(2000)], k=n))


@pytest.mark.parametrize("preset", ["default", "authors"])
def test_megabyte_types_of_rare_characters(preset):
    scorer = Scorer(preset=preset)

    def both(n):
        label = {"answer": "yes", "location": "top", "type": rare_characters(n, 1)}
        return scorer.score(WRAP.format("top", rare_characters(n, 2)), label)

    assert growth(lambda n: n, both) < 30


# Every malformed label raises ValueError naming the problem, never another exception.
DEEP = 5000


def nested_dict(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth):
        value = {"a": value}
    return value


def nested_list(depth: int) -> list:
    value: list = [1]
    for _ in range(depth):
        value = [value]
    return value


BAD_LABELS = [
    # (what, label, words the error must contain)
    ("deep JSON list", '{"answer": "yes", "type": ' + "[" * DEEP + "]" * DEEP + "}", "nested too deeply"),
    ("deep JSON object", '{"answer": ' + '{"a": ' * DEEP + "1" + "}" * DEEP + "}", "nested too deeply"),
    (
        "JSON integer past the digit limit",
        '{"answer": "yes", "cells": [' + "1" * 10_000 + "]}",
        "invalid JSON",
    ),  # past Python's digit limit
    ("deep dict as type", {"answer": "yes", "type": nested_dict(DEEP)}, "type must be text"),
    ("deep dict as answer", {"answer": nested_dict(DEEP)}, "answer must be"),
    ("deep list as cells", {"answer": "yes", "cells": nested_list(DEEP)}, "cells must be integers"),
    ("deep list as location", {"answer": "yes", "location": nested_list(DEEP)}, "cells must be integers"),
    ("dict as location", {"answer": "yes", "location": {"a": 1}}, "location must be text"),
    ("dict as cells", {"answer": "yes", "cells": {"1": 1}}, "cells must be a list of integers"),
    ("float cell", {"answer": "yes", "cells": [1.0]}, "integers"),
    ("number as cells", {"answer": "yes", "cells": 5}, "cells must be a list of integers"),
    ("numpy array as type", {"answer": "yes", "type": np.array(["scratch"])}, "type must be text"),
    ("NaN answer", {"answer": float("nan")}, "answer must be"),
    ("megabyte answer", {"answer": "yes" * 1_000_000}, "answer must be"),
    ("no answer key", {1: "yes"}, "missing 'answer'"),
    ("bytes", b'{"answer": "yes"}', "expected a dict"),
    ("set", {"yes"}, "expected a dict"),
    ("list", [{"answer": "yes"}], "expected a dict"),
    ("number", 3.5, "expected a dict"),
    ("megabyte of answer openers", "<think>t</think>" + "<answer>" * 100_000, "exactly one <answer>"),
    ("empty text", "", "exactly one <answer>"),
]


@pytest.mark.parametrize("preset", ["default", "authors"])
@pytest.mark.parametrize(("name", "label", "message"), BAD_LABELS, ids=[row[0] for row in BAD_LABELS])
def test_malformed_labels_raise_value_error(name, label, message, preset):
    if preset == "authors" and message == "exactly one <answer>":
        message = "answer must be 'yes' or 'no'"  # their reading: the first answer, or the whole text
    with pytest.raises(ValueError, match=message) as raised:
        Scorer(preset=preset).score("<think>t</think><answer>no</answer>", label)
    assert type(raised.value) in (ValueError, json.JSONDecodeError) and len(str(raised.value)) < 300


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20) | st.sampled_from(["yes", "no"]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(["answer", "location", "cells", "type", "x"]), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(label=json_values, preset=st.sampled_from(["default", "authors"]))
def test_any_json_label_parses_or_raises_value_error(label, preset):
    scorer = Scorer(preset=preset)
    for form in (label, json.dumps(label)):
        try:
            result = scorer.score("<think>t</think><answer>no</answer>", form)
        except ValueError:
            continue
        assert 0 <= result.total <= result.max_total


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
