"""Recipe configs: every shipped YAML loads; overrides and bad keys are handled clearly."""

import re
from pathlib import Path

import pytest

from iadr1_rl.train.config import load_config, resolve_paths, save_config

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "recipes" / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_configs_load(path):
    config = load_config(path)
    assert config.grpo.group_size >= 2 and config.grpo.clip == 0.2 and config.grpo.beta == 0.04


def test_overrides_and_round_trip(tmp_path):
    config = load_config(CONFIGS[0], ["grpo.lr=3e-6", "resources.rollout.num_gpus=1", "grpo.scorer={grid: [4, 4]}"])
    assert config.grpo.lr == 3e-6 and config.resources.rollout.num_gpus == 1.0
    assert config.grpo.scorer == {"grid": [4, 4]}
    save_config(config, tmp_path / "resolved.yaml")
    assert load_config(tmp_path / "resolved.yaml") == config


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("grpo.lrr=1", "unknown key(s) ['lrr'] in grpo"),
        ("grpo.lr=fast", "grpo.lr = 'fast'"),
        ("grpo=3", "grpo must be a mapping"),
        ("nonsense", "section.key=value"),
    ],
)
def test_bad_overrides_are_named(override, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        load_config(None, [override])


def test_relative_paths_resolve_against_root(tmp_path):
    config = resolve_paths(load_config(None, ["model.path=models/tiny", "data.train=/abs/train.jsonl"]), tmp_path)
    assert config.model.path == str(tmp_path / "models/tiny") and config.data.train == "/abs/train.jsonl"


def test_grpo_prompts_default_to_the_sft_records(tmp_path):
    config = load_config(None, ["data.train=data/sft.jsonl"])
    assert config.grpo_records_path() == "data/sft.jsonl"  # one data set for both stages
    config = resolve_paths(load_config(None, ["data.train=data/sft.jsonl", "data.grpo_train=data/rl.jsonl"]), tmp_path)
    assert config.grpo_records_path() == str(tmp_path / "data" / "rl.jsonl")  # its own, resolved like the others
