"""docs/reward.md "Total", "Inputs" and "Using it"."""

import json

import pytest

from rewards import Scorer, group_advantages, parse_label

GOOD_ANOMALY = (
    "<think>a thin line crosses the upper left</think><location>upper-left corner</location>"
    "<type>Scratches</type><answer>yes</answer>"
)
GOOD_NORMAL = "<think>uniform texture, nothing unusual</think><answer>no</answer>"
ANOMALY_LABEL = {"answer": "yes", "location": "top left", "type": "scratch"}
NORMAL_LABEL = {"answer": "no"}

TOTAL_CASES = [
    # (completion, label, (R_c, R_a, R_l, R_t), total)
    (GOOD_ANOMALY, ANOMALY_LABEL, (1, 1, 1, 1), 4),  # everything right
    (GOOD_NORMAL, NORMAL_LABEL, (1, 1, 0, 0), 2),  # a normal sample earns at most 2
    (GOOD_NORMAL, ANOMALY_LABEL, (0, 0, 0, 0), 0),  # missed anomaly: wrong pattern, wrong answer
    (GOOD_ANOMALY, NORMAL_LABEL, (0, 0, 0, 0), 0),  # overkill: P_A on a normal label
    # Anomalous pattern but answer `no` on an anomaly: gate closed, location/type ignored.
    (GOOD_ANOMALY.replace(">yes<", ">no<"), ANOMALY_LABEL, (1, 0, 0, 0), 1),
    # Answer yes without the pattern: R_c 0, but the gate opens on â alone.
    (
        "I think <location>top left</location><type>scratch</type><answer>yes</answer>",
        ANOMALY_LABEL,
        (0, 1, 1, 1),
        3,
    ),
    # Wrong location, right type.
    (GOOD_ANOMALY.replace("upper-left corner", "bottom right"), ANOMALY_LABEL, (1, 1, 0, 1), 3),
    # Unparseable location earns nothing, even against a `center` label.
    (
        GOOD_ANOMALY.replace("upper-left corner", "somewhere"),
        {"answer": "yes", "location": "center", "type": "scratch"},
        (1, 1, 0, 1),
        3,
    ),
    # A list of guesses earns no type reward.
    (GOOD_ANOMALY.replace("Scratches", "scratch, hole or stain"), ANOMALY_LABEL, (1, 1, 1, 0), 3),
    # Two locations where the label has one: the sets differ.
    (GOOD_ANOMALY.replace("upper-left corner", "top left and center"), ANOMALY_LABEL, (1, 1, 0, 1), 3),
    # Answer in the normal pattern on a normal label, in capitals with a dot.
    ("<think>fine</think><answer>No.</answer>", NORMAL_LABEL, (1, 1, 0, 0), 2),
    # Nothing at all.
    ("", ANOMALY_LABEL, (0, 0, 0, 0), 0),
]


@pytest.mark.parametrize(("completion", "label", "parts", "total"), TOTAL_CASES)
def test_total(completion, label, parts, total):
    result = Scorer().score(completion, label)
    assert (result.consistency, result.accuracy, result.location, result.type) == pytest.approx(parts)
    assert result.total == pytest.approx(total)


def test_every_score_explains_itself():
    result = Scorer().score(GOOD_ANOMALY, ANOMALY_LABEL)
    assert result.answer == "yes"
    assert result.predicted_cells == {1} and result.label_cells == {1}
    assert result.type_rule == "exact" and result.gated
    assert result.max_total == 4 and result.normalised == 1.0
    as_dict = result.as_dict()
    assert as_dict["predicted_cells"] == [1] and as_dict["type_rule"] == "exact"
    json.dumps(as_dict)  # serialisable


def test_type_rule_is_none_when_gate_closed():
    result = Scorer().score(GOOD_NORMAL, ANOMALY_LABEL)
    assert not result.gated and result.type_rule is None and result.type == 0


def test_weights_scale_each_part():
    scorer = Scorer(weights={"consistency": 0.5, "accuracy": 2.0, "location": 0.0, "type": 3.0})
    result = scorer.score(GOOD_ANOMALY.replace("Scratches", "surface scratch"), ANOMALY_LABEL)
    assert result.total == pytest.approx(0.5 + 2.0 + 0.0 + 3.0 * 0.85)
    assert result.max_total == pytest.approx(5.5)
    assert Scorer(weights=[1, 1, 2, 2]).score(GOOD_ANOMALY, ANOMALY_LABEL).total == 6


@pytest.mark.parametrize(
    ("weights", "message"),
    [({"format": 1}, "unknown parts"), ([1, 2], "expected 4"), ([1, 1, -1, 1], "location"), ([1, 1, 1, "x"], "type")],
)
def test_bad_weights_are_named(weights, message):
    with pytest.raises(ValueError, match=message):
        Scorer(weights=weights)


def test_other_grid():
    scorer = Scorer(grid=(4, 4))
    completion = GOOD_ANOMALY.replace("upper-left corner", "top")
    assert scorer.score(completion, {"answer": "yes", "cells": [2, 3], "type": "scratch"}).location == 1
    assert scorer.score(completion, {"answer": "yes", "cells": [2], "type": "scratch"}).location == 0


LABEL_CASES = [
    # (label, answer, cells, type)
    ({"answer": "yes", "location": "top left", "type": "scratch"}, "yes", {1}, "scratch"),
    ({"answer": "Yes.", "location": [1, 2], "type": "hole"}, "yes", {1, 2}, "hole"),  # cells as a list
    ({"answer": "yes", "location": "center", "cells": [9]}, "yes", {9}, ""),  # explicit cells win
    ({"answer": "no"}, "no", set(), ""),
    ('{"answer": "yes", "location": "bottom", "type": "stain"}', "yes", {8}, "stain"),  # JSON text
    (
        "<think>t</think><location>top right</location><type>dirt</type><answer>yes</answer>",
        "yes",
        {3},
        "dirt",
    ),  # the paper's solution string
    ("<think>t</think><answer>no</answer>", "no", set(), ""),
]


@pytest.mark.parametrize(("label", "answer", "cells", "kind"), LABEL_CASES)
def test_labels(label, answer, cells, kind):
    parsed = parse_label(label)
    assert (parsed.answer, parsed.cells, parsed.type) == (answer, frozenset(cells), kind)


BAD_LABELS = [
    # (label, words the error must contain)
    ({}, "missing 'answer'"),
    ({"answer": "maybe"}, "'yes' or 'no'"),
    ({"answer": True}, "'yes' or 'no'"),
    ({"answer": None}, "'yes' or 'no'"),
    ({"answer": "yes", "cells": [0]}, "outside a 3x3 grid"),
    ({"answer": "yes", "cells": [10]}, "outside"),
    ({"answer": "yes", "cells": ["1"]}, "integers"),
    ({"answer": "yes", "cells": "1"}, "list of integers"),
    ({"answer": "yes", "type": 3}, "type must be text"),
    ({"answer": "yes", "location": 5}, "location must be text"),
    ("<think>t</think>", "exactly one <answer>"),
    ("<answer>perhaps</answer>", "'yes' or 'no'"),
    ("{not json", "invalid JSON"),
    (42, "expected a dict"),
    (None, "expected a dict"),
]


@pytest.mark.parametrize(("label", "message"), BAD_LABELS)
def test_bad_labels_raise_value_error(label, message):
    with pytest.raises(ValueError, match=message):
        Scorer().score(GOOD_NORMAL, label)


COMPLETION_FORMS = [
    # (completion as a trainer may pass it, the text it holds)
    (GOOD_NORMAL, GOOD_NORMAL),
    (None, ""),
    (GOOD_NORMAL.encode(), GOOD_NORMAL),
    (b"\xff<answer>no</answer>", "\ufffd<answer>no</answer>"),  # bad bytes replaced, never raised
    ("\x00" * 10, "\x00" * 10),
    ([{"role": "assistant", "content": GOOD_NORMAL}], GOOD_NORMAL),  # TRL's conversational completion
    (({"role": "assistant", "content": GOOD_NORMAL},), GOOD_NORMAL),
    (
        [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "a"},
            {"role": "assistant", "content": GOOD_NORMAL},
        ],
        GOOD_NORMAL,
    ),
    (
        [
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "<think>x</think>"},
                    {"type": "text", "text": "<answer>no</answer>"},
                ],
            }
        ],
        "<think>x</think><answer>no</answer>",
    ),
    ([{"role": "assistant", "content": [{"type": "image"}, {"type": "text", "text": GOOD_NORMAL}]}], GOOD_NORMAL),
    ([{"role": "assistant", "content": None}], ""),
]


@pytest.mark.parametrize(("completion", "text"), COMPLETION_FORMS)
def test_completion_forms_score_as_their_text(completion, text):
    scorer = Scorer()
    assert scorer.score(completion, NORMAL_LABEL) == scorer.score(text, NORMAL_LABEL)
    assert scorer.score_batch([completion], [NORMAL_LABEL]) == [scorer.score(text, NORMAL_LABEL)]
    assert scorer.score_group([completion, text], NORMAL_LABEL).scores[0] == scorer.score(text, NORMAL_LABEL)


def test_a_conversational_completion_is_not_its_repr():
    """The bug this guards: a message list scored as its str() earned 1.0, not 2.0."""
    messages = [{"role": "assistant", "content": "<think>x</think><answer>no</answer>"}]
    assert Scorer().score(messages, {"answer": "no"}).total == 2.0


NOT_COMPLETIONS = [
    (12, "got int"),
    (1.5, "got float"),
    (object(), "got object"),
    ({"role": "assistant", "content": "x"}, "got dict"),  # one message, not a list of them
    (["x"], "chat messages"),
    ([{"content": "x"}], "chat messages"),
    ([{"role": "user", "content": "x"}], "no assistant message"),
    ([{"role": "assistant", "content": 3}], "text or a list of parts"),
    ([{"role": "assistant", "content": [3]}], "a mapping or text"),
]


@pytest.mark.parametrize(("completion", "message"), NOT_COMPLETIONS)
def test_other_objects_are_a_caller_error(completion, message):
    with pytest.raises(TypeError, match=message):
        Scorer().score(completion, NORMAL_LABEL)
    with pytest.raises(TypeError, match=message):
        Scorer().score_batch([GOOD_NORMAL, completion], [NORMAL_LABEL, NORMAL_LABEL])


def test_score_batch_matches_score():
    scorer = Scorer()
    completions = [GOOD_ANOMALY, GOOD_NORMAL, "junk", GOOD_ANOMALY]
    labels = [ANOMALY_LABEL, NORMAL_LABEL, ANOMALY_LABEL, NORMAL_LABEL]
    assert scorer.score_batch(completions, labels) == [scorer.score(c, lab) for c, lab in zip(completions, labels)]
    with pytest.raises(ValueError, match="3 completions but 2 labels"):
        scorer.score_batch(completions[:3], labels[:2])


def test_score_group_advantages():
    group = Scorer().score_group([GOOD_ANOMALY, GOOD_NORMAL, GOOD_ANOMALY, "junk"], ANOMALY_LABEL)
    totals = [s.total for s in group.scores]
    assert totals == [4, 0, 4, 0]
    # Hand-computed: mean 2, sample std sqrt(16/3) = 2.3094; A = ±2 / (2.3094 + 1e-4).
    expected = 2 / (2.309401076758503 + 1e-4)
    assert group.advantages == pytest.approx([expected, -expected, expected, -expected])
    assert group.has_signal and group.mean == 2


def test_group_without_signal():
    group = Scorer().score_group([GOOD_NORMAL] * 4, NORMAL_LABEL)
    assert not group.has_signal and group.advantages == [0, 0, 0, 0]
    assert not Scorer().score_group([GOOD_NORMAL], NORMAL_LABEL).has_signal  # G = 1


def test_group_advantages_edge_cases():
    assert group_advantages([]) == ([], 0.0, 0.0)
    advantages, mean, std = group_advantages([1.0, 2.0, 3.0], epsilon=0)
    assert advantages == pytest.approx([-1, 0, 1]) and mean == 2 and std == 1


def test_scorer_config_file(tmp_path):
    (tmp_path / "vocab.json").write_text(json.dumps({"groups": {"g": {"Crack": ["fissure"]}}}))
    config = tmp_path / "scorer.yaml"
    config.write_text("grid: [2, 2]\nweights: {type: 2}\nvocabulary: vocab.json\n")
    scorer = Scorer.from_config(config)
    assert scorer.grid == (2, 2) and scorer.weights.type == 2
    assert scorer.type_matcher.match("fissure", "crack").rule == "category"
    with pytest.raises(ValueError, match="unknown keys"):
        Scorer.from_config({"grids": [3, 3]})


def test_core_scorer_imports_no_extras():
    """The scorer's core needs only the standard library, regex, rapidfuzz and nltk (numpy is
    picked up by nltk when it happens to be installed, so it is not in the list)."""
    import subprocess
    import sys

    code = (
        "import sys, rewards; rewards.Scorer().score('x', {'answer': 'no'}); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'yaml', 'fastapi', "
        "'transformers', 'ray', 'iadr1_rl', 'tqdm', 'pydantic'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
