"""The demo's target report (`recipes/demo.py`): which targets a run met."""

from __future__ import annotations

import importlib.util
from pathlib import Path

DEMO = Path(__file__).resolve().parent.parent / "recipes" / "demo.py"


def load_demo():
    spec = importlib.util.spec_from_file_location("demo_recipe", DEMO)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def change(n, before, after, standard_error):
    return {"n": n, "before": before, "after": after, "standard_error": standard_error}


def summary(type_after: float, wall_seconds: float = 800.0) -> dict:
    return {
        "wall_seconds": wall_seconds,
        "pa_sft": {"balanced_accuracy": 0.95},
        "sc_grpo": {
            "balanced_accuracy": 0.94,  # within 0.02: holds
            "normalised_reward_fitted_rise": change(150, 0.70, 0.75, 0.01),
        },
        "changes": {
            "mean_reward": change(1000, 2.70, 2.76, 0.01),
            "location_accuracy": change(500, 0.67, 0.74, 0.018),
            "type_score": change(500, 0.88, type_after, 0.01),
            "type_category_accuracy": change(500, 0.90, 0.89, 0.01),
        },
    }


def test_every_target_met():
    lines = load_demo().target_report(summary(type_after=0.91))
    assert len(lines) == 8 and all(line.startswith("[met]") for line in lines[:7]), lines
    # The type category accuracy is reported beside the targets, not counted as one.
    assert lines[7].startswith("[info] type category accuracy") and lines[7].endswith("within noise")


def test_a_rise_within_two_standard_errors_is_not_met():
    lines = load_demo().target_report(summary(type_after=0.895))  # +0.015 < 2 × 0.01
    failed = [line for line in lines if line.startswith("[NOT met]")]
    assert len(failed) == 1 and "type score" in failed[0] and "2 s.e. 0.020" in failed[0]


def test_a_slow_demo_is_not_met():
    lines = load_demo().target_report(summary(type_after=0.91, wall_seconds=16 * 60))
    assert lines[0].startswith("[NOT met] whole demo under 15 min: 16.0 min")
