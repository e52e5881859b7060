"""Shared fixtures. The repository root goes first on sys.path so that our packages
(not OpenRLHF's top-level `tests`) are what the tests import."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

# Local test clusters keep Ray 2.60's token auth off and write no ~/.ray/auth_token, so a
# later `ray start` + `ray job submit` (make demo) is not broken by a test run.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# The tests start their own Ray (address="local"), and so do the recipes they run as
# subprocesses: a RAY_ADDRESS in the caller's shell must not send them to another cluster.
os.environ.pop("RAY_ADDRESS", None)

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SHARED = ROOT.parent / "shared"

# Installed into .venv-vllm by `make install-vllm`, not a test module.
collect_ignore = ["vllm_env"]


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The benchmarks' label files (MMAD samples) beside the checkout. A user's clone has
    none: those tests skip, saying so. CI has them (CI is set): there a missing folder is a
    failure, so the tests cannot silently stop running."""
    if not SHARED.is_dir():
        reason = f"needs the benchmarks' label files in ../shared (expected {SHARED})"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI is set, so they must be there")
        pytest.skip(reason)
    return SHARED


@pytest.fixture(scope="session")
def tiny_processor(tmp_path_factory):
    """A real Qwen2-VL processor (locally trained tokenizer, PIL image processor)."""
    from iadr1_rl.models.tiny import TAG_TOKENS, build_processor, train_tokenizer

    corpus = [
        "<think>The surface shows a dark hole near the top left corner.</think>",
        "<location>top left</location><type>hole</type><answer>yes</answer>",
        "<think>Uniform texture without any defect.</think><answer>no</answer>",
        "Are there any defects in the test image?",
    ] * 20 + TAG_TOKENS
    return build_processor(train_tokenizer(corpus, vocab_size=400))


class RunningServer:
    """A real `iadr1-reward-server` process on a free loopback port."""

    def __init__(self, *args: str, env: dict | None = None) -> None:
        import os
        import subprocess
        import time

        import httpx

        from iadr1_rl.train.distributed import free_port

        self.port = free_port("127.0.0.1")
        self.url = f"http://127.0.0.1:{self.port}"
        # The server reads its settings from IADR1_* variables: start from none of ours.
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("IADR1_")}
        full_env.update(env or {})
        self.process = subprocess.Popen(
            [sys.executable, "-m", "rewards.server", "--port", str(self.port), "--log-level", "warning", *args],
            cwd=ROOT,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.process.stdout.read()}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("server did not become healthy in 60 s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except Exception:
            self.process.kill()


@pytest.fixture
def start_server():
    """Start reward servers with given CLI arguments; all are stopped after the test."""
    started: list[RunningServer] = []

    def start(*args: str, env: dict | None = None) -> RunningServer:
        server = RunningServer(*args, env=env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


class FixedResponseEngine:
    """Stands in for a vLLM engine: answers every prompt with the same tokens."""

    def __init__(self, tokenizer, text: str) -> None:
        self.token_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        self.text = text
        self.seen_prompt_ids = None

    async def generate(self, prompt_token_ids, sampling_params, multi_modal_data=None):
        from types import SimpleNamespace

        self.seen_prompt_ids = prompt_token_ids
        output = SimpleNamespace(token_ids=self.token_ids, text=self.text, finish_reason="stop", logprobs=None)
        return SimpleNamespace(outputs=[output])


@pytest.fixture(scope="session")
def openrlhf_execute(tiny_processor):
    """Run OpenRLHF's own `SingleTurnAgentExecutor` on one VLM prompt (a real Qwen2-VL
    processor expands the image pads) with a fixed response, rewarded by `reward_url`
    (our reward file or our server's URL). Returns (executor output, engine)."""
    import asyncio
    from types import SimpleNamespace

    from PIL import Image

    def execute(reward_url: str, label, response: str, question: str = "Are there any defects?"):
        from openrlhf.utils.agent import SingleTurnAgentExecutor

        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        prompt = tiny_processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        executor = SingleTurnAgentExecutor(remote_rm_url=reward_url)
        engine = FixedResponseEngine(tiny_processor.tokenizer, response)
        params = SimpleNamespace(max_tokens=64, logprobs=None)
        image = Image.new("RGB", (112, 112), (120, 110, 100))
        output = asyncio.run(executor.execute(prompt, label, params, 512, tiny_processor, engine, images=[image]))
        return output, engine

    return execute


@pytest.fixture(scope="session")
def synthetic_records(tmp_path_factory) -> Path:
    """A small synthetic data set (records.jsonl, images, references)."""
    from iadr1_rl.data.synth import SynthConfig, synthesize

    return synthesize(tmp_path_factory.mktemp("synthetic"), SynthConfig(n=24, seed=11, shots=1, cot="short"))


def build_tiny_model(records_path: Path, out: Path, hidden: int = 64, heads: int = 4) -> Path:
    """A tiny random-initialised Qwen2-VL folder, tokenizer trained on the records' corpus."""
    from iadr1_rl.data.records import load_records
    from iadr1_rl.models.tiny import TinyModelSpec, build_tiny_vlm

    corpus = [r.response for r in load_records(records_path)] + ["Are there any defects in the test image?"]
    spec = TinyModelSpec(
        hidden_size=hidden, num_heads=heads, num_layers=1, intermediate_size=128, vision_depth=1, vision_embed_dim=32
    )
    return build_tiny_vlm(corpus, out, spec)


def format_briefly(model_dir: Path, records_path: Path, out: Path) -> Path:
    """A few seconds of PA-SFT, so that completions carry tags and their rewards differ (a
    random model earns 0 everywhere: no signal to train on)."""
    from iadr1_rl.actors.policy import PolicyActor
    from iadr1_rl.data.records import load_records
    from iadr1_rl.train.engine import OptimizerSettings

    records = load_records(records_path)[:8]
    policy = PolicyActor(str(model_dir), optimizer=OptimizerSettings(lr=5e-3, total_steps=60), torch_threads=2)
    for _ in range(40):
        policy.sft_step(records)
    policy.save_model(str(out))
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, synthetic_records) -> Path:
    """A tiny random-initialised Qwen2-VL folder, tokenizer trained on the synthetic corpus."""
    return build_tiny_model(synthetic_records, tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture(scope="session")
def formatted_model(tiny_model_dir, synthetic_records, tmp_path_factory) -> Path:
    """The tiny model after a few seconds of PA-SFT (`format_briefly`)."""
    return format_briefly(tiny_model_dir, synthetic_records, tmp_path_factory.mktemp("formatted"))


@pytest.fixture(scope="session")
def wide_head_formatted_model(synthetic_records, tmp_path_factory) -> Path:
    """`formatted_model` with 32-wide attention heads: vLLM's CPU attention has no kernel for
    the 16-wide heads of the suite's tiniest model."""
    model = build_tiny_model(synthetic_records, tmp_path_factory.mktemp("wide_tiny"), hidden=128, heads=4)
    return format_briefly(model, synthetic_records, tmp_path_factory.mktemp("wide_formatted"))


@pytest.fixture(scope="module")
def ray_session():
    """A 2-CPU local Ray for one test module (actors import our code through PYTHONPATH)."""
    import ray

    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}},
    )
    yield
    ray.shutdown()


def psutil_errors() -> tuple[type[BaseException], ...]:
    """What reading another process can raise while it ends."""
    import psutil

    return (ProcessLookupError, PermissionError, psutil.Error)


def session_processes(sid: int) -> list:
    """Every live process of a session (a recipe started with start_new_session): psutil.Process."""
    import psutil

    found = []
    for process in psutil.process_iter(["pid", "status"]):
        try:
            if os.getsid(process.pid) == sid and process.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(process)
        except psutil_errors():
            continue
    return found


class RecipeRun:
    """A recipe run as a user runs it: in its own process session (and so with the local Ray
    it starts), its stderr read as it comes, so that a test can wait on what the run says,
    kill one of its actors' processes, or kill it whole."""

    def __init__(self, command: list[str]) -> None:
        env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self.lines.extend, args=(self.process.stderr,), daemon=True)
        self.reader.start()

    def says(self, text: str) -> bool:
        return any(text in line for line in list(self.lines))

    def stderr(self) -> str:
        self.reader.join(timeout=30)
        return "".join(self.lines)

    def wait_until(self, condition, what: str, seconds: float = 240) -> None:
        deadline = time.monotonic() + seconds
        while not condition():
            assert self.process.poll() is None, f"the run ended before {what}: {self.stderr()[-3000:]}"
            assert time.monotonic() < deadline, f"{what} did not happen in {seconds} s"
            time.sleep(0.05)

    def actor_process(self, actor: str, seconds: float = 60):
        """The live process of `actor` (its class name) among the run's (psutil.Process)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for process in session_processes(self.process.pid):
                try:
                    if " ".join(process.cmdline()).startswith(f"ray::{actor}"):
                        return process
                except psutil_errors():
                    continue
            time.sleep(0.2)
        raise AssertionError(f"no process of {actor} among the run's")

    def finish(self, seconds: float) -> int:
        """Its exit status, once it ends by itself within `seconds`."""
        return self.process.wait(timeout=seconds)

    def kill(self) -> None:
        """kill -9 of the driver and the local Ray it started (nothing can clean up)."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


@pytest.fixture
def start_recipe():
    """`start_recipe("sc_grpo.py", *arguments)`: a RecipeRun of `recipes/<name>`; one still
    running when the test ends is killed whole."""
    runs: list[RecipeRun] = []

    def start(name: str, *arguments: str) -> RecipeRun:
        runs.append(RecipeRun([sys.executable, str(ROOT / "recipes" / name), *arguments]))
        return runs[-1]

    yield start
    for run in runs:
        if run.process.poll() is None:
            run.kill()
