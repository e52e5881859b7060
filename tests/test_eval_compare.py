"""Paired comparison of two models' predictions (`iadr1-eval compare`)."""

from __future__ import annotations

import json
import math

import pytest

from iadr1_rl.eval.cli import main as eval_main
from iadr1_rl.eval.compare import Change, fitted_rise, paired_changes

HOLE = {"answer": "yes", "cells": [1], "type": "hole", "location": "top left"}
NORMAL = {"answer": "no", "cells": [], "type": "", "location": ""}


def anomalous(location: str, kind: str) -> str:
    return f"<think>t</think><location>{location}</location><type>{kind}</type><answer>yes</answer>"


RIGHT = anomalous("top left", "hole")  # location 1, type 1
WRONG_TYPE = anomalous("top left", "scratch")  # location 1, type 0 (other group)
WRONG_PLACE = anomalous("bottom right", "hole")  # location 0, type 1
SAYS_NO = "<think>t</think><answer>no</answer>"


def write(path, outputs: list[tuple[dict, str]]) -> str:
    rows = [{"id": f"i{k}", "dataset": "d", "label": label, "output": out} for k, (label, out) in enumerate(outputs)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_paired_change_against_hand_computed(tmp_path):
    # Four anomalous items: type goes 1,0,0,1 -> 1,1,1,1 (differences 0,1,1,0).
    before = write(tmp_path / "a.jsonl", [(HOLE, RIGHT), (HOLE, WRONG_TYPE), (HOLE, WRONG_TYPE), (HOLE, WRONG_PLACE)])
    after = write(tmp_path / "b.jsonl", [(HOLE, RIGHT), (HOLE, RIGHT), (HOLE, RIGHT), (HOLE, WRONG_PLACE)])
    changes = paired_changes(before, after)
    kind = changes["type_score"]
    assert (kind.n, kind.before, kind.after) == (4, 0.5, 1.0)
    # differences 0,1,1,0: mean 0.5, sample variance 1/3, s.e. sqrt(1/3 / 4)
    assert kind.standard_error == pytest.approx(math.sqrt(1 / 12))
    location = changes["location_accuracy"]
    assert (location.before, location.after, location.standard_error) == (0.75, 0.75, 0.0)
    assert not location.rose()


def test_type_category_accuracy_separates_seeing_from_wording(tmp_path):
    # Named by a synonym ("perforation", rule category: 0.85) then by the label's term (1.0):
    # the type score rises, the category accuracy does not (the same defect was seen).
    synonym = anomalous("top left", "perforation")
    before = write(tmp_path / "a.jsonl", [(HOLE, synonym), (HOLE, WRONG_TYPE)])
    after = write(tmp_path / "b.jsonl", [(HOLE, RIGHT), (HOLE, WRONG_TYPE)])
    changes = paired_changes(before, after)
    assert changes["type_score"].before == pytest.approx((0.85 + 0.0) / 2)
    assert changes["type_score"].after == pytest.approx((1.0 + 0.0) / 2)
    category = changes["type_category_accuracy"]
    assert (category.before, category.after) == (0.5, 0.5)  # scratch for a hole is wrong in both
    # A wrong kind of defect in the same group (fracture for a hole, 0.3) is not the right category.
    same_group = write(tmp_path / "c.jsonl", [(HOLE, anomalous("top left", "fracture")), (HOLE, SAYS_NO)])
    assert paired_changes(same_group, same_group)["type_category_accuracy"].before == 0.0


def test_normal_items_count_for_answers_not_for_location(tmp_path):
    before = write(tmp_path / "a.jsonl", [(NORMAL, RIGHT), (HOLE, SAYS_NO)])
    after = write(tmp_path / "b.jsonl", [(NORMAL, SAYS_NO), (HOLE, RIGHT)])
    changes = paired_changes(before, after)
    assert changes["answer_accuracy"].n == 2
    assert (changes["answer_accuracy"].before, changes["answer_accuracy"].after) == (0.0, 1.0)
    assert changes["location_accuracy"].n == 1  # only the anomalous item
    assert changes["location_accuracy"].after == 1.0


def test_a_test_set_without_anomalies_has_no_location_change(tmp_path, capsys):
    before = write(tmp_path / "a.jsonl", [(NORMAL, SAYS_NO)])
    changes = paired_changes(before, before)
    assert changes["location_accuracy"].n == 0
    assert changes["location_accuracy"].to_json()["before"] is None  # null in JSON, not NaN
    assert eval_main(["compare", before, before]) == 0
    assert "location_accuracy: n/a (no anomalous item has a location label" in capsys.readouterr().out


def test_anomalies_without_location_labels_are_not_a_location_score(tmp_path, capsys):
    """MMAD has no masks: its anomalous labels have no cells, and location is n/a, not 0.000."""
    no_mask = {"answer": "yes", "cells": [], "location": "", "type": "hole", "dataset": "MMAD"}
    items = [(no_mask, RIGHT)] * 3 + [(NORMAL, SAYS_NO)]
    before = write(tmp_path / "a.jsonl", items)
    changes = paired_changes(before, before)
    assert changes["location_accuracy"].n == 0 and changes["type_score"].n == 3
    assert changes["location_accuracy"].verdict() == "n/a"
    assert eval_main(["compare", before, before]) == 0
    out = capsys.readouterr().out
    assert "location_accuracy: n/a (no anomalous item has a location label" in out
    assert "within noise" not in out.split("location_accuracy")[1].splitlines()[0]
    assert eval_main(["score", before]) == 0
    assert "location_accuracy=n/a" in capsys.readouterr().out


def test_order_of_rows_does_not_matter(tmp_path):
    items = [(HOLE, RIGHT), (HOLE, WRONG_TYPE), (NORMAL, SAYS_NO)]
    before = write(tmp_path / "a.jsonl", items)
    rows = (tmp_path / "a.jsonl").read_text().splitlines()
    (tmp_path / "b.jsonl").write_text("\n".join(reversed(rows)) + "\n")
    changes = paired_changes(before, tmp_path / "b.jsonl")
    assert all(c.change == 0 and c.standard_error == 0 for c in changes.values())


@pytest.mark.parametrize(
    ("change", "rose"),
    [
        (Change("m", 100, 0.50, 0.56, 0.02), True),  # +0.06 > 2 × 0.02
        (Change("m", 100, 0.50, 0.53, 0.02), False),  # +0.03 within 2 s.e.
        (Change("m", 100, 0.50, 0.40, 0.01), False),  # a fall
    ],
)
def test_rose_needs_two_standard_errors(change, rose):
    assert change.rose() is rose


def test_different_test_sets_are_refused(tmp_path):
    before = write(tmp_path / "a.jsonl", [(HOLE, RIGHT), (HOLE, RIGHT)])
    after = write(tmp_path / "b.jsonl", [(HOLE, RIGHT)])
    with pytest.raises(ValueError, match="same test items"):
        paired_changes(before, after)


def test_row_without_output_is_named(tmp_path):
    (tmp_path / "a.jsonl").write_text(json.dumps({"id": "x", "label": HOLE}) + "\n")
    with pytest.raises(ValueError, match=r"a.jsonl:1.*output"):
        paired_changes(tmp_path / "a.jsonl", tmp_path / "a.jsonl")


def test_cli_prints_verdicts_and_writes_json(tmp_path, capsys):
    items_before = [(HOLE, WRONG_TYPE)] * 10
    items_after = [(HOLE, RIGHT)] * 8 + [(HOLE, WRONG_TYPE)] * 2
    before = write(tmp_path / "a.jsonl", items_before)
    after = write(tmp_path / "b.jsonl", items_after)
    assert eval_main(["compare", before, after, "--json", str(tmp_path / "c.json")]) == 0
    printed = capsys.readouterr().out
    assert "type_score: 0.000 -> 0.800" in printed and "rose" in printed
    saved = json.loads((tmp_path / "c.json").read_text())
    assert saved["type_score"]["rose"] is True
    assert saved["location_accuracy"]["change"] == 0


def test_fitted_rise_against_hand_computed():
    # y = 1, 2, 2, 3: slope 0.6, intercept 1.1; residuals -0.1, 0.3, -0.3, 0.1.
    rise = fitted_rise("reward", [1.0, 2.0, 2.0, 3.0])
    assert (rise.before, rise.after, rise.n) == (pytest.approx(1.1), pytest.approx(2.9), 4)
    # s.e. of the slope: sqrt(0.2 / 2 / 5); the rise spans 3 steps.
    assert rise.standard_error == pytest.approx(3 * math.sqrt(0.02))
    assert rise.rose()


def test_fitted_rise_of_a_flat_noisy_curve_is_within_noise():
    values = [2.0, 2.4, 1.6, 2.2, 1.8, 2.1, 1.9, 2.0]
    rise = fitted_rise("reward", values)
    assert abs(rise.change) < 2 * rise.standard_error and not rise.rose()


def test_fitted_rise_needs_three_steps():
    with pytest.raises(ValueError, match="at least 3"):
        fitted_rise("reward", [1.0, 2.0])


def test_a_change_reads_back_from_its_json():
    change = Change("type_score", 500, 0.771, 0.817, 0.0113)
    assert Change.from_json(change.to_json()) == change
    assert Change.from_json(change.to_json(), "renamed").metric == "renamed"
    # A metric without items is written as null and read back as NaN, not as None.
    empty = Change.from_json(Change("m", 0, math.nan, math.nan, math.nan).to_json())
    assert math.isnan(empty.before) and not empty.rose()


def test_score_and_compare_use_the_scorer_given(tmp_path, capsys):
    """A run trains on one reward and reports it: `--scorer` makes evaluation score alike."""
    from rewards import Scorer

    config = tmp_path / "scorer.json"
    scorer = Scorer.from_config({"weights": {"type": 3}})
    config.write_text(json.dumps(scorer.to_config()))
    before = write(tmp_path / "a.jsonl", [(HOLE, WRONG_TYPE), (NORMAL, SAYS_NO)])
    after = write(tmp_path / "b.jsonl", [(HOLE, RIGHT), (NORMAL, SAYS_NO)])
    plain, weighted = tmp_path / "plain.json", tmp_path / "weighted.json"
    assert eval_main(["score", after, "--json", str(plain)]) == 0
    assert eval_main(["score", after, "--json", str(weighted), "--scorer", str(config)]) == 0
    plain, weighted = json.loads(plain.read_text()), json.loads(weighted.read_text())
    assert plain["mean_reward"] == (4 + 2) / 2 and weighted["mean_reward"] == (6 + 2) / 2
    assert weighted["scorer"] == {"preset": "default", "digest": scorer.digest} != plain["scorer"]
    assert f"scorer {scorer.digest}" in capsys.readouterr().out
    changes = tmp_path / "changes.json"
    assert eval_main(["compare", before, after, "--scorer", str(config), "--json", str(changes)]) == 0
    written = json.loads(changes.read_text())
    assert written["mean_reward"]["change"] == pytest.approx(3 / 2)  # type 0 -> 1 at weight 3, over 2 items
    assert written["scorer"]["digest"] == scorer.digest
