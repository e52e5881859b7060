"""The per-step reward metrics SC-GRPO logs (`reward_metrics`)."""

from __future__ import annotations

import pytest

from iadr1_rl.backends.local.experience import reward_metrics
from rewards import Scorer

HOLE = {"answer": "yes", "cells": [1], "type": "hole"}
NORMAL = {"answer": "no", "cells": [], "type": ""}
PERFECT_ANOMALY = "<think>t</think><location>top left</location><type>hole</type><answer>yes</answer>"
PERFECT_NORMAL = "<think>t</think><answer>no</answer>"
WRONG_PLACE = "<think>t</think><location>bottom right</location><type>hole</type><answer>yes</answer>"


def metrics_of(pairs):
    scorer = Scorer()
    scores = [scorer.score(text, label) for text, label in pairs]
    return reward_metrics(scores, [label for _, label in pairs], scorer)


def test_normalised_reward_does_not_depend_on_the_prompt_mix():
    # Perfect answers: the total is 4 for an anomaly and 2 for a normal item, so its mean
    # moves with the mix; the normalised reward is 1 either way.
    mostly_anomalous = metrics_of([(PERFECT_ANOMALY, HOLE)] * 3 + [(PERFECT_NORMAL, NORMAL)])
    mostly_normal = metrics_of([(PERFECT_ANOMALY, HOLE)] + [(PERFECT_NORMAL, NORMAL)] * 3)
    assert mostly_anomalous["reward_total"] == 3.5 and mostly_normal["reward_total"] == 2.5
    assert mostly_anomalous["reward_normalised"] == mostly_normal["reward_normalised"] == 1.0


def test_part_means_and_task_accuracies():
    metrics = metrics_of([(PERFECT_ANOMALY, HOLE), (WRONG_PLACE, HOLE), (PERFECT_NORMAL, NORMAL)])
    assert metrics["reward_location"] == pytest.approx(1 / 3)  # one of three completions
    assert metrics["location_accuracy"] == 0.5  # over the two anomalous ones only
    assert metrics["type_score"] == 1.0
    assert metrics["reward_normalised"] == pytest.approx((1 + 3 / 4 + 1) / 3)
    assert metrics["reward_location_std"] == pytest.approx((2 / 9) ** 0.5)


def test_the_rollout_logprob_gap_and_its_stop():
    from iadr1_rl.backends.local.grpo import check_gap, mean_gap

    assert mean_gap([[-1.0, -2.0], [-0.5]], [[-1.0, -2.5], [-0.25]]) == pytest.approx(0.25)
    assert mean_gap([], []) == 0.0
    check_gap(0.01, 1.0, version=3)  # near zero: the engine samples from the policy being trained
    with pytest.raises(RuntimeError, match=r"rollout_logprob_gap 2\.5 is over rollout\.max_logprob_gap 1: .*version 3"):
        check_gap(2.5, 1.0, version=3)
