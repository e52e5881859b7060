"""The OpenRLHF backend on CPU: the generated arguments parse with OpenRLHF 0.11.2's own
parser (and pass its own checks) for every shipped config; the dry run prints one
command; the exported prompts load through OpenRLHF's dataset; the cluster manifests
parse and name files that exist."""

import json
import runpy
import shlex
import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml

from iadr1_rl.backends import openrlhf as backend
from iadr1_rl.train.config import load_config
from rewards import Scorer

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted((ROOT / "recipes" / "configs").glob("*.yaml"))
GPU_CONFIGS = [path for path in CONFIGS if path.stem != "demo"]  # the CPU demo trains in float32
QWEN = ROOT / "recipes" / "configs" / "qwen2_vl_2b.yaml"
# train_ppo_ray imports these at the top; they need vLLM / DeepSpeed / flash-attn (GPU only).
GPU_ONLY = {
    "openrlhf.trainer.ray": ["create_vllm_engines"],
    "openrlhf.trainer.ray.launcher": ["RayActorGroup", "ReferenceModelActor", "RewardModelActor"],
    "openrlhf.trainer.ray.ppo_actor": ["PolicyModelActor"],
    "openrlhf.trainer.ray.ppo_critic": ["CriticModelActor"],
}


class Parsed(Exception):
    """Raised where train_ppo_ray would start training: parsing and its checks are done."""

    def __init__(self, args):
        super().__init__("parsed")
        self.parsed = args


def parse_with_openrlhf(arguments: list[str], monkeypatch) -> object:
    import openrlhf.utils
    import ray

    for name, attributes in GPU_ONLY.items():
        stub = types.ModuleType(name)
        for attribute in attributes:
            setattr(stub, attribute, object())
        monkeypatch.setitem(sys.modules, name, stub)

    def capture(args):
        raise Parsed(args)

    monkeypatch.setattr(openrlhf.utils, "get_strategy", capture)
    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    monkeypatch.setattr(sys, "argv", ["train_ppo_ray", *arguments])
    with pytest.raises(Parsed) as parsed:
        runpy.run_module("openrlhf.cli.train_ppo_ray", run_name="__main__")
    return parsed.value.parsed


class Launched(Exception):
    """Raised where train_ppo_ray would create its vLLM engines: its launch checks passed."""


def launch_with_openrlhf(arguments: list[str], monkeypatch) -> None:
    """OpenRLHF's own `train()` on these arguments, up to creating its vLLM engines (Ray's
    placement group and DeepSpeed stand aside): its launch assertions run as on a cluster.
    Returns when they pass; their AssertionError otherwise."""
    import openrlhf.utils
    import ray
    import ray.util.placement_group

    for name, attributes in GPU_ONLY.items():
        stub = types.ModuleType(name)
        for attribute in attributes:
            setattr(stub, attribute, object())
        monkeypatch.setitem(sys.modules, name, stub)

    def launched(*args, **kwargs):
        raise Launched()

    sys.modules["openrlhf.trainer.ray"].create_vllm_engines = launched
    monkeypatch.setattr(openrlhf.utils, "get_strategy", lambda args: types.SimpleNamespace(print=lambda *a: None))
    group = types.SimpleNamespace(ready=lambda: None)
    module = sys.modules["ray.util.placement_group"]  # `ray.util.placement_group` is also the function's name
    monkeypatch.setattr(module, "placement_group", lambda *a, **k: group)
    monkeypatch.setattr(ray, "get", lambda refs: refs)
    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    monkeypatch.setattr(sys, "argv", ["train_ppo_ray", *arguments])
    try:
        runpy.run_module("openrlhf.cli.train_ppo_ray", run_name="__main__")
    except Launched:
        return
    raise AssertionError("train_ppo_ray returned without creating its vLLM engines")


@pytest.fixture
def config_for(tmp_path, synthetic_records):
    def make(path: Path, *extra: str):
        return load_config(
            path,
            [
                f"data.train={synthetic_records}",
                f"grpo.output={tmp_path / path.stem}",
                f"grpo.init={tmp_path / 'model'}",
                *extra,
            ],
        )

    return make


@pytest.mark.parametrize("path", GPU_CONFIGS, ids=lambda p: p.stem)
def test_arguments_parse_with_openrlhf(path, config_for, monkeypatch):
    config = config_for(path)
    job = backend.prepare(config)
    assert job.command[1:3] == ["-m", "openrlhf.cli.train_ppo_ray"]
    args = parse_with_openrlhf(job.command[3:], monkeypatch)
    assert args.algo.advantage.estimator == "group_norm"
    assert args.rollout.n_samples_per_prompt == config.grpo.group_size
    assert args.algo.kl.use_loss and args.algo.kl.estimator == "k3"
    assert args.algo.kl.init_coef == config.grpo.beta and args.actor.eps_clip == config.grpo.clip
    assert args.rollout.max_new_tokens == config.grpo.max_new_tokens
    assert args.data.image_key == "images" and args.data.label_key == "label"
    assert args.data.max_images_per_prompt == (2 if config.data.shots else 1)
    assert args.reward.remote_url == [str(backend.REWARD_FILE)]
    assert args.vllm.num_engines == config.openrlhf.vllm_num_engines
    assert args.ds.zero_stage == config.openrlhf.zero_stage
    # grpo.steps rollout steps, as OpenRLHF counts them (its own max_steps formula).
    steps_per_episode = args.data.max_samples // args.rollout.batch_size
    assert args.train.num_episodes * steps_per_episode == config.grpo.steps
    assert args.train.batch_size * config.grpo.mini_batches == config.grpo.prompts_per_step * config.grpo.group_size


@pytest.mark.parametrize("path", GPU_CONFIGS, ids=lambda p: p.stem)
def test_every_shipped_config_passes_openrlhf_launch_checks(path, config_for, monkeypatch):
    """Not only its parser: OpenRLHF's `train()` itself, up to its vLLM engines (with
    colocate_all it asserts the engines take exactly the actor's GPUs)."""
    launch_with_openrlhf(backend.prepare(config_for(path)).command[3:], monkeypatch)


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        (["openrlhf.vllm_num_engines=2", "openrlhf.vllm_tensor_parallel_size=1"], "openrlhf.vllm_num_engines"),
        (["openrlhf.micro_rollout_batch_size=32", "grpo.prompts_per_step=4"], "openrlhf.micro_rollout_batch_size"),
        (["openrlhf.micro_train_batch_size=3"], "openrlhf.micro_train_batch_size"),
    ],
)
def test_an_impossible_launch_is_refused_before_anything_starts(overrides, named, config_for, tmp_path, monkeypatch):
    config = config_for(QWEN, *overrides)
    with pytest.raises(ValueError, match=f"OpenRLHF would refuse to start: .*{named.replace('.', '[.]')}"):
        backend.prepare(config)
    assert not (tmp_path / QWEN.stem / "openrlhf_prompts.jsonl").exists()  # nothing exported, nothing started
    # The same arguments, unchecked, stop OpenRLHF (or the DeepSpeed it runs) where we said.
    arguments = backend.build_arguments(config, tmp_path / "p.jsonl", tmp_path, backend.RunLength(1, 24, 4))
    if "micro_train" in named:  # DeepSpeed's batch assertion, not OpenRLHF's: its arithmetic
        world = config.openrlhf.num_nodes * config.openrlhf.num_gpus_per_node
        assert config.grpo.prompts_per_step * config.grpo.group_size % (3 * world)
        return
    with pytest.raises(AssertionError):
        launch_with_openrlhf(arguments, monkeypatch)


def test_the_cpu_demo_config_is_refused_naming_the_key(config_for):
    with pytest.raises(ValueError, match=r"model\.dtype='float32'"):
        backend.prepare(config_for(ROOT / "recipes" / "configs" / "demo.yaml"))


@pytest.mark.parametrize("steps", [1, 7, 12, 70])
def test_the_run_has_exactly_grpo_steps(steps, config_for):
    """OpenRLHF runs whole episodes over its prompts: episodes × prompts make the steps."""
    config = config_for(QWEN, f"grpo.steps={steps}", "grpo.prompts_per_step=4")
    length = backend.prepare(config).length
    assert length.episodes * length.steps_per_episode == steps
    assert length.prompts <= 24 and length.prompts % 4 == 0  # 24 synthetic records


def test_too_few_records_for_a_step_is_refused(config_for):
    with pytest.raises(ValueError, match=r"grpo\.prompts_per_step 32 is more than the 24 training records"):
        backend.prepare(config_for(QWEN, "grpo.prompts_per_step=32", "grpo.group_size=2"))


def test_drop_no_signal_turns_on_openrlhf_dynamic_filter(config_for, monkeypatch):
    on = parse_with_openrlhf(backend.prepare(config_for(QWEN, "grpo.drop_no_signal=true")).command[3:], monkeypatch)
    assert on.algo.dynamic_filtering_enable and tuple(on.algo.dynamic_filtering_range) == (0.0, 1.0)
    off = parse_with_openrlhf(backend.prepare(config_for(QWEN, "grpo.drop_no_signal=false")).command[3:], monkeypatch)
    assert not off.algo.dynamic_filtering_enable


def test_a_checkpoint_with_another_max_pixels_is_refused(config_for, tiny_model_dir):
    processor = json.loads((tiny_model_dir / "processor_config.json").read_text())["image_processor"]
    theirs = processor["size"]["longest_edge"]
    config = config_for(QWEN, f"grpo.init={tiny_model_dir}", f"model.max_pixels={theirs * 2}")
    with pytest.raises(ValueError, match=r"model\.max_pixels=.* but the processor of"):
        backend.prepare(config)
    backend.prepare(config_for(QWEN, f"grpo.init={tiny_model_dir}", f"model.max_pixels={theirs}"))


def test_reward_server_url_and_one_shot(config_for, monkeypatch):
    config = config_for(CONFIGS[-1], "openrlhf.reward=http://10.0.0.5:5000/get_reward", "data.shots=0")
    args = parse_with_openrlhf(backend.prepare(config).command[3:], monkeypatch)
    assert args.reward.remote_url == ["http://10.0.0.5:5000/get_reward"]
    with pytest.raises(ValueError, match=r"openrlhf\.reward"):
        backend.reward_target(config_for(CONFIGS[-1], "openrlhf.reward=somewhere"))


def test_dry_run_prints_one_command(tmp_path, synthetic_records):
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "recipes" / "sc_grpo.py"),
            "--config",
            str(ROOT / "recipes/configs/qwen2_5_vl_3b.yaml"),
            "--backend",
            "openrlhf",
            "--dry-run",
            f"data.train={synthetic_records}",
            f"grpo.output={tmp_path / 'out'}",
            "grpo.steps=10",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    commands = [line for line in lines if "-m openrlhf.cli.train_ppo_ray" in line]
    assert len(commands) == 1 and shlex.split(commands[0])[1:3] == ["-m", "openrlhf.cli.train_ppo_ray"]
    assert any(line.startswith("prompt data: ") and line.endswith("openrlhf_prompts.jsonl") for line in lines)
    assert (tmp_path / "out" / "openrlhf_prompts.jsonl").is_file()
    assert not (tmp_path / "out" / "checkpoints").exists()  # nothing started
    # The run's scorer reaches the reward file: its resolved config, and the variable naming it.
    assert f"environment: IADR1_SCORER_CONFIG={tmp_path / 'out' / 'scorer.json'}" in lines
    assert Scorer.from_config(tmp_path / "out" / "scorer.json").digest == Scorer().digest
    # What the command means, in words: the run's length and where its evaluation comes from.
    assert any(line.startswith("length: ") and "= 10 steps" in line for line in lines), lines
    assert any(line.startswith("evaluate after: iadr1-eval run") for line in lines), lines


def test_the_scorer_config_reaches_every_actor(config_for, tmp_path):
    """Under `ray job submit` the job's runtime env reaches actors on every node: the scorer
    variable goes there too, and merges with what OpenRLHF's own `ray.init` sets."""
    from ray.runtime_env.runtime_env import _merge_runtime_env

    config = config_for(QWEN, "grpo.scorer={preset: authors}")
    job = backend.prepare(config)
    assert Scorer.from_config(job.env["IADR1_SCORER_CONFIG"]).digest == Scorer(preset="authors").digest
    submitted = {"runtime_env": {"working_dir": "/tmp/x", "env_vars": {"HF_HOME": "/h"}}, "metadata": {}}
    env = backend.job_environment(job.env, {"PATH": "/bin", backend.RAY_JOB_CONFIG: json.dumps(submitted)})
    assert env["IADR1_SCORER_CONFIG"] == job.env["IADR1_SCORER_CONFIG"] and env["PATH"] == "/bin"
    runtime = json.loads(env[backend.RAY_JOB_CONFIG])["runtime_env"]
    openrlhf_own = {"env_vars": {"TOKENIZERS_PARALLELISM": "true", "NCCL_DEBUG": "WARN"}}
    merged = _merge_runtime_env(runtime, openrlhf_own)
    assert merged["env_vars"]["IADR1_SCORER_CONFIG"] == job.env["IADR1_SCORER_CONFIG"]
    assert merged["env_vars"]["HF_HOME"] == "/h" and merged["working_dir"] == "/tmp/x"
    assert backend.job_environment(job.env, {"PATH": "/bin"}) == {"PATH": "/bin", **job.env}  # no job: as is


def test_a_reward_server_must_score_with_the_run_s_config(config_for, start_server, tmp_path):
    server = start_server("--config", str(write_scorer(tmp_path / "server.json", {"weights": {"type": 2}})))
    url = server.url + "/get_reward"
    with pytest.raises(RuntimeError, match="start the server with --config"):
        backend.check_reward_server(url, Scorer())
    backend.check_reward_server(url, Scorer.from_config({"weights": {"type": 2}}))
    with pytest.raises(RuntimeError, match="did not answer"):
        backend.check_reward_server("http://127.0.0.1:9/get_reward", Scorer(), timeout=2)


def write_scorer(path: Path, config: dict) -> Path:
    path.write_text(json.dumps(config))
    return path


def test_exported_prompts_load_through_openrlhf_dataset(config_for, tiny_processor):
    from types import SimpleNamespace

    from openrlhf.datasets.prompts_dataset import PromptDataset

    job = backend.prepare(config_for(QWEN))
    rows = [json.loads(line) for line in job.prompt_data.read_text().splitlines()][:4]
    data = SimpleNamespace(input_key="prompt", label_key="label", apply_chat_template=True, image_key="images")
    dataset = PromptDataset(
        rows, tiny_processor, SimpleNamespace(args=SimpleNamespace(data=data), is_rank_0=lambda: True)
    )
    assert len(dataset) == 4
    _, prompt, label, images = dataset[0]
    assert prompt.count("<|image_pad|>") == 1 and len(images) == 1 and Path(images[0]).is_file()
    assert json.loads(label)["answer"] in ("yes", "no")


def test_cluster_manifests_parse_and_name_real_files():
    rayjob = yaml.safe_load((ROOT / "ray_cluster" / "rayjob.yaml").read_text())
    entry = shlex.split(rayjob["spec"]["entrypoint"])
    assert entry[1] == "recipes/sc_grpo.py" and (ROOT / entry[1]).is_file()
    assert (ROOT / entry[entry.index("--config") + 1]).is_file()
    tag = (ROOT / "ray_cluster" / "Dockerfile").read_text().splitlines()[0].removeprefix("# image: ")
    spec = rayjob["spec"]["rayClusterSpec"]
    images = [c["image"] for c in spec["headGroupSpec"]["template"]["spec"]["containers"]]
    images += [c["image"] for g in spec["workerGroupSpecs"] for c in g["template"]["spec"]["containers"]]
    assert images and set(images) == {tag}
    cluster = yaml.safe_load((ROOT / "ray_cluster" / "cluster.yaml").read_text())
    assert any("requirements-nodeps.txt" in c for c in cluster["setup_commands"])
    assert cluster["available_node_types"]["gpu_worker"]["resources"]["GPU"] >= 1
    runtime = yaml.safe_load((ROOT / "ray_cluster" / "runtime_env.yaml").read_text())
    setup = (ROOT / "setup.py").read_text()
    assert all(f'"{pin}"' in setup for pin in runtime["pip"]["packages"])  # the same pins as setup.py


def test_the_backend_environment_pins_what_openrlhf_pins():
    """requirements-openrlhf.txt (make install-openrlhf) against OpenRLHF 0.11.2's own
    metadata: the Ray, DeepSpeed, transformers and vLLM it was released with."""
    from importlib.metadata import requires, version

    pins = {
        line.split("==")[0].split("[")[0]: line.split("==")[1]
        for line in (ROOT / "requirements-openrlhf.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    assert version("openrlhf") == "0.11.2" and "openrlhf==0.11.2" in (ROOT / "Makefile").read_text()
    theirs = {}
    for requirement in requires("openrlhf"):
        name, _, rest = requirement.partition("==")
        if rest and ("extra ==" not in rest or 'extra == "vllm"' in rest):
            theirs[name.split("[")[0].strip()] = rest.split(";")[0].strip()
    for package in ("ray", "deepspeed", "transformers", "vllm"):
        assert pins[package] == theirs[package], package
    for package in ("regex", "rapidfuzz", "nltk", "pydantic"):  # this project's, as setup.py pins them
        assert f'"{package}=={pins[package]}"' in (ROOT / "setup.py").read_text(), package
