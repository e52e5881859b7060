"""Recipe configs: every shipped YAML loads; values are typed and checked, unknown keys
are refused with the nearest valid one; overrides stay `section.key=value`."""

import re
from pathlib import Path

import pytest

from iadr1_rl.train.config import config_keys, load_config, resolve_paths, save_config

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


BAD_OVERRIDES = [
    # (override, words the error must contain)
    ("grpo.group_size=4.5", "grpo.group_size: input should be a valid integer, got a number with a fractional part"),
    ("grpo.group_size=-2", "grpo.group_size: input should be greater than or equal to 2 (got -2)"),
    ("grpo.group_size=1", "greater than or equal to 2"),
    ("grpo.temperature=0", "grpo.temperature: input should be greater than 0"),
    ("grpo.lr=0", "grpo.lr: input should be greater than 0"),
    ("sft.lr=-1e-5", "sft.lr: input should be greater than 0"),
    ("grpo.top_p=1.5", "grpo.top_p: input should be less than or equal to 1"),
    ("grpo.steps=0", "grpo.steps"),
    ("sft.warmup_ratio=2", "sft.warmup_ratio"),
    ("data.shots=2", "data.shots: input should be 0 or 1"),
    ("model.dtype=fp8", "model.dtype: input should be 'float32', 'bfloat16' or 'float16'"),
    ("data.prompt=chatty", "data.prompt"),
    ("resources.policy.num_gpus=-1", "resources.policy.num_gpus"),
    ("grpo.lr=fast", "grpo.lr: input should be a valid number"),
    ("grpo.group_sise=4", "unknown key grpo.group_sise; did you mean grpo.group_size?"),
    ("grop.lr=1", "unknown key grop; did you mean grpo?"),
    ("grpo.lrr=1", "unknown key grpo.lrr; did you mean grpo.lr?"),
    ("resources.polcy.num_cpus=1", "unknown key resources.polcy; did you mean resources.policy?"),
    # Another framework's name for one of ours: the key it means, not the nearest spelling.
    ("grpo.learning_rate=1e-6", "unknown key grpo.learning_rate; did you mean grpo.lr?"),
    ("sft.learning_rate=1e-6", "unknown key sft.learning_rate; did you mean sft.lr?"),
    ("grpo.num_generations=8", "unknown key grpo.num_generations; did you mean grpo.group_size?"),
    ("grpo.kl_coef=0.1", "unknown key grpo.kl_coef; did you mean grpo.beta?"),
    ("sft.world_size=2", "sft: world_size 2 needs strategy ddp or deepspeed"),
    # A key that was replaced: what took its place, not a spelling guess.
    ("resources.use_vllm=true", "resources.use_vllm was replaced: the rollout engine is rollout.engine"),
    ("rollout.engine=sglang", "rollout.engine: input should be"),
    ("grpo=3", "grpo: input should be a valid dictionary"),
    ("nonsense", "section.key=value"),
    ("grpo.lr=[", "not valid YAML"),
]


@pytest.mark.parametrize(("override", "words"), BAD_OVERRIDES)
def test_bad_values_and_keys_are_named(override, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        load_config(None, [override])


def test_every_problem_is_listed_at_once():
    with pytest.raises(ValueError) as error:
        load_config(None, ["grpo.group_size=4.5", "grpo.temperature=-1", "sft.epocs=2"])
    message = str(error.value)
    assert "grpo.group_size" in message and "grpo.temperature" in message and "did you mean sft.epochs?" in message


def test_integers_from_text_and_whole_floats_are_accepted():
    config = load_config(None, ["grpo.group_size='8'", "grpo.steps=10.0", "grpo.lr=1e-5"])
    assert (config.grpo.group_size, config.grpo.steps, config.grpo.lr) == (8, 10, 1e-5)


def test_relative_paths_resolve_against_root(tmp_path):
    config = resolve_paths(load_config(None, ["model.path=models/tiny", "data.train=/abs/train.jsonl"]), tmp_path)
    assert config.model.path == str(tmp_path / "models/tiny") and config.data.train == "/abs/train.jsonl"
    config = resolve_paths(load_config(None, ["grpo.scorer=configs/scorer.yaml"]), tmp_path)
    assert config.grpo.scorer == str(tmp_path / "configs/scorer.yaml")


def test_grpo_prompts_default_to_the_sft_records(tmp_path):
    config = load_config(None, ["data.train=data/sft.jsonl"])
    assert config.grpo_records_path() == "data/sft.jsonl"  # one data set for both stages
    config = resolve_paths(load_config(None, ["data.train=data/sft.jsonl", "data.grpo_train=data/rl.jsonl"]), tmp_path)
    assert config.grpo_records_path() == str(tmp_path / "data" / "rl.jsonl")  # its own, resolved like the others


def test_dotted_keys_cover_every_leaf():
    keys = config_keys()
    assert "resources.policy.num_gpus" in keys and "grpo.scorer" in keys and "openrlhf.extra_args" in keys
    assert "resources.policy" not in keys and len(keys) == len(set(keys))


def test_a_section_written_in_part_keeps_its_other_defaults():
    """`resources.rollout.num_gpus=1` alone: the rollout worker still asks for half a CPU
    (it silently asked for a whole one)."""
    config = load_config(None, ["resources.rollout.num_gpus=1", "resources.reference.num_gpus=0.5"])
    assert config.resources.rollout.num_cpus == config.resources.reference.num_cpus == 0.5
    assert config.resources.policy.num_cpus == 1.0
