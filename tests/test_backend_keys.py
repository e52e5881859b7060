"""Every config key honoured or refused by each backend (`iadr1_rl/backends/keys.py`).

For every key of the config, each backend's table entry is checked against what the
backend does: changing an honoured key changes the local run's plan or the OpenRLHF
command, changing a key that does not apply changes nothing, and a value a backend
cannot honour is refused naming the key. Every key of every shipped config is covered.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import yaml

from iadr1_rl.backends import openrlhf
from iadr1_rl.backends.keys import LOCAL, OPENRLHF, check_keys, markdown, table, unapplied_keys
from iadr1_rl.backends.local.plan import GRPOPlan, SFTPlan
from iadr1_rl.train.config import config_keys, load_config

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted((ROOT / "recipes" / "configs").glob("*.yaml"))


def leaves(mapping: dict, prefix: str = "") -> list[str]:
    keys = []
    for name, value in mapping.items():
        keys += leaves(value, f"{prefix}{name}.") if isinstance(value, dict) else [prefix + name]
    return keys


def test_the_table_covers_every_key():
    assert set(LOCAL) == set(OPENRLHF) == set(config_keys())
    assert [row[0] for row in table()] == config_keys()


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_key_of_every_shipped_config_is_in_the_table(path):
    keys = leaves(yaml.safe_load(path.read_text()))
    known = set(config_keys())
    # A mapping value is one key (grpo.scorer may be a mapping): its leaves start with a known key.
    assert all(key in known or any(key.startswith(k + ".") for k in known) for key in keys), keys


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_model_dir, synthetic_records):
    """Two of everything a path can name: records, models."""
    root = tmp_path_factory.mktemp("keys")
    other_model = root / "other_model"
    shutil.copytree(tiny_model_dir, other_model)
    other_records = root / "other" / "records.jsonl"
    other_records.parent.mkdir()
    lines = synthetic_records.read_text().splitlines()
    other_records.write_text("\n".join(lines[:12]) + "\n")
    for image in synthetic_records.parent.rglob("*.png"):
        target = other_records.parent / image.relative_to(synthetic_records.parent)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(image, target)
    return {
        "root": root,
        "model": tiny_model_dir,
        "other_model": other_model,
        "records": synthetic_records,
        "other_records": other_records,
    }


def base_overrides(inputs: dict, backend: str) -> list[str]:
    root = inputs["root"] / backend
    return [
        f"run_dir={root / 'run'}",
        f"model.path={inputs['model']}",
        f"data.train={inputs['records']}",
        f"data.eval={inputs['records']}",
        "data.shots=1",
        "sft.output=''",
        "grpo.output=''",
        "grpo.init=''",
        "grpo.prompts_per_step=4",
        "grpo.steps=6",
        "model.max_pixels=null",
        "sft.strategy=ddp",  # so that sft.world_size may change alone
        "grpo.strategy=ddp",  # and grpo.world_size
    ]


def alternatives(inputs: dict) -> dict[str, object]:
    """A valid other value for every key."""
    return {
        "run_dir": str(inputs["root"] / "elsewhere"),
        "seed": 7,
        "backbone": "qwen2_vl_2b",
        "model.path": str(inputs["other_model"]),
        "model.dtype": "float16",
        "model.max_pixels": 200704,
        "model.gradient_checkpointing": True,
        "data.train": str(inputs["other_records"]),
        "data.grpo_train": str(inputs["other_records"]),
        "data.eval": str(inputs["other_records"]),
        "data.prompt": "iad_r1",
        "data.eval_prompt": "iad_r1",
        "data.shots": 0,
        "sft.output": str(inputs["root"] / "sft_out"),
        "sft.epochs": 3.0,
        "sft.batch_size": 4,
        "sft.gradient_accumulation": 2,
        "sft.lr": 3e-5,
        "sft.warmup_ratio": 0.2,
        "sft.weight_decay": 0.1,
        "sft.grad_clip": 0.5,
        "sft.lora": True,
        "sft.strategy": "deepspeed",
        "sft.world_size": 2,
        "sft.zero_stage": 3,
        "sft.offload_optimizer": True,
        "grpo.output": str(inputs["root"] / "grpo_out"),
        "grpo.init": str(inputs["other_model"]),
        "grpo.steps": 9,
        "grpo.prompts_per_step": 2,
        "grpo.group_size": 6,
        "grpo.ppo_epochs": 2,
        "grpo.mini_batches": 2,
        "grpo.lr": 3e-6,
        "grpo.warmup_ratio": 0.1,
        "grpo.clip": 0.3,
        "grpo.beta": 0.01,
        "grpo.temperature": 0.7,
        "grpo.top_p": 0.9,
        "grpo.max_new_tokens": 64,
        "grpo.drop_no_signal": True,
        "grpo.grad_clip": 0.5,
        "grpo.scorer": {"preset": "authors"},
        "grpo.strategy": "deepspeed",
        "grpo.world_size": 2,
        "grpo.zero_stage": 3,
        "grpo.offload_optimizer": True,
        "resources.backend": "openrlhf",
        "resources.policy.num_cpus": 2.0,
        "resources.policy.num_gpus": 1.0,
        "resources.reference.num_cpus": 2.0,
        "resources.reference.num_gpus": 1.0,
        "resources.rollout.num_cpus": 2.0,
        "resources.rollout.num_gpus": 1.0,
        "resources.num_rollout_workers": 2,
        "resources.num_reference_workers": 2,
        "resources.torch_threads": 3,
        "resources.ray_address": "10.0.0.5:6379",
        "rollout.weight_transport": "nccl",
        "rollout.tensor_parallel_size": 2,
        "rollout.sleep_level": 2,
        "resilience.max_actor_restarts": 5,
        "resilience.max_run_restarts": 0,
        "resilience.call_timeout_s": 60.0,
        "log.to": ["mlflow"],
        "log.project": "elsewhere",
        "log.mlflow_uri": "http://10.0.0.5:5000",
        "memory.train_tokens": 4096,
        "memory.logprob_tokens": 8192,
        "checkpoint.every": 3,
        "checkpoint.keep": 5,
        "eval.batch_size": 4,
        "eval.max_new_tokens": 16,
        "openrlhf.num_nodes": 2,
        "openrlhf.num_gpus_per_node": 8,
        "openrlhf.vllm_num_engines": 2,
        "openrlhf.vllm_tensor_parallel_size": 2,
        "openrlhf.vllm_gpu_memory_utilization": 0.4,
        "openrlhf.colocate_all": False,
        "openrlhf.zero_stage": 3,
        "openrlhf.micro_train_batch_size": 4,
        "openrlhf.micro_rollout_batch_size": 8,
        "openrlhf.reward": "http://10.0.0.5:5000/get_reward",
        "openrlhf.max_len": 8192,
        "openrlhf.extra_args": ["--logger.wandb_project", "iadr1"],
    }


def with_value(base: list[str], key: str, value: object) -> list[str]:
    return [*base, f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"]


def observe_local(config) -> dict:
    """Everything the local backend does with a config: both runs' plans, and its choice."""
    return {
        "backend": config.resources.backend,
        "sft": SFTPlan.from_config(config).as_dict(),
        "grpo": GRPOPlan.from_config(config).as_dict(),
    }


def observe_openrlhf(config) -> dict:
    """Everything the OpenRLHF backend does with a config: the command, the environment,
    the exported prompts and the run's scorer."""
    job = openrlhf.prepare(config, python="python")
    return {
        "backend": config.resources.backend,
        "command": job.command,
        "env": job.env,
        "prompts": hashlib.sha256(job.prompt_data.read_bytes()).hexdigest(),
        "scorer": job.scorer.digest,
    }


OBSERVE = {"local": observe_local, "openrlhf": observe_openrlhf}
TABLES = {"local": LOCAL, "openrlhf": OPENRLHF}
BASE_CONFIG = {
    "local": ROOT / "recipes" / "configs" / "demo.yaml",
    "openrlhf": ROOT / "recipes" / "configs" / "qwen2_vl_2b.yaml",
}


@pytest.mark.parametrize("backend", ["local", "openrlhf"])
def test_each_key_does_what_the_table_says(backend, inputs):
    base = base_overrides(inputs, backend)
    base_config = load_config(BASE_CONFIG[backend], base)
    reference = OBSERVE[backend](base_config)
    wrong = []
    for key, value in alternatives(inputs).items():
        if isinstance(value, bool):
            value = not base_config.get(key)
        handling = TABLES[backend][key]
        config = load_config(BASE_CONFIG[backend], with_value(base, key, value))
        assert config.get(key) == value or key.endswith("output"), key
        try:
            seen = OBSERVE[backend](config)
        except ValueError as error:
            if handling.refuse is None and not (backend == "openrlhf" and key == "model.max_pixels"):
                wrong.append(f"{key}: refused ({error}) but the table does not refuse it")
            elif key not in str(error) and "max_pixels" not in str(error):
                wrong.append(f"{key}: refused without naming the key ({error})")
            continue
        if handling.refuse is not None and handling.refuse(value, config):
            wrong.append(f"{key}={value!r}: the table refuses it but the backend ran")
        changed = seen != reference
        if changed != handling.applies:
            said = "honoured" if handling.applies else "not applicable"
            wrong.append(f"{key}: the table says {said}, but changing it {'did' if changed else 'did not'} change")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_shipped_config_runs_or_is_refused_on_each_backend(path, inputs):
    for backend in ("local", "openrlhf"):
        config = load_config(path, base_overrides(inputs, backend))
        if backend == "openrlhf" and config.model.dtype == "float32":
            with pytest.raises(ValueError, match=r"model\.dtype='float32': OpenRLHF trains in bf16 or fp16"):
                check_keys(config, backend, "sc_grpo")
            continue
        OBSERVE[backend](config)


def test_a_key_set_that_the_backend_does_not_apply_is_named_once(caplog):
    """rollout.* on the OpenRLHF backend (its engines take openrlhf.*), openrlhf.* on the local
    one: one warning each, saying what the backend uses instead; defaults and the other
    recipe's keys say nothing."""
    import logging

    config = load_config(None, ["rollout.kv_cache_gib=2", "sft.lr=1e-4", "model.dtype=bfloat16"])
    lines = unapplied_keys(config, "openrlhf", "sc_grpo")
    assert lines == [
        "rollout.kv_cache_gib=2.0 is not applied by the openrlhf backend: OpenRLHF's vLLM settings are "
        "openrlhf.* (openrlhf.vllm_gpu_memory_utilization)"
    ]
    assert unapplied_keys(config, "local", "sc_grpo") == []  # all three apply there (sft.lr to PA-SFT only)
    local = unapplied_keys(load_config(None, ["openrlhf.zero_stage=3"]), "local", "pa_sft")
    assert len(local) == 1 and "openrlhf.zero_stage=3" in local[0] and "resources.*" in local[0]
    with caplog.at_level(logging.WARNING, logger="iadr1_rl.backends.keys"):
        check_keys(config, "openrlhf", "sc_grpo")
    assert [r.getMessage() for r in caplog.records] == lines


def test_the_docs_show_the_table_of_the_code():
    text = (ROOT / "docs" / "training.md").read_text()
    begin, end = "<!-- keys table: begin -->\n", "\n<!-- keys table: end -->"
    shown = text[text.index(begin) + len(begin) : text.index(end)]
    assert shown == markdown(), "regenerate it: python -m iadr1_rl.backends.keys"
