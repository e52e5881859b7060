"""SC-GRPO steps at a real backbone's shape: where a step's time and memory go, beside the
memory plan's estimate.

    python benchmarks/bench_step.py --shape tiny                  # CPU, seconds (the test suite runs it)
    python benchmarks/bench_step.py --shape qwen2_vl_2b --gpus 0.4,0.3,0.3 --steps 4
    python benchmarks/bench_step.py --shape tiny_qwen_vocab --compare   # memory-safe vs straightforward log-probs
    .venv-vllm/bin/python benchmarks/bench_step.py --engine hf,vllm     # both rollout engines, one run
    python benchmarks/bench_step.py --world 1,2                         # the policy as 1, then 2 ZeRO-3 ranks
    python benchmarks/bench_step.py --shape qwen2_vl_2b --gpus 1,1,1 --transport nccl,object_store  # GPUs

`--shape` builds a random-initialised model with that backbone's real shapes (its real
vocabulary size included; nothing is downloaded) and synthetic prompts, then runs
`--steps` SC-GRPO steps through the local backend's own loop and actors with the
resources given, on whatever devices the machine has. It prints each phase's time (the
first step, which warms up, left out), tokens per second, and each actor's peak memory
(GPU: most reserved, `torch.cuda.max_memory_reserved`; CPU: resident high-water mark above
the process's own) beside the plan's estimate, as a table and as JSON (`--json`). `--engine hf,vllm` runs the same steps
with each rollout engine in turn and prints each phase's time with vLLM over HF's. `--world
1,2` runs them with the policy as one rank, then as DeepSpeed ZeRO-3 ranks, and prints each
rank's training state (weights, gradients, master weights, optimizer) over one rank's.
`--transport` runs them with each `rollout.weight_transport` in turn (on GPUs: ipc beside
the policy, nccl to another GPU, object_store through host memory), each with its sync's
time and size.

`--compare` measures, each in its own process, the peak of one policy training step and
one reference pass with the straightforward full-vocabulary log-probs and with the
memory-safe path, and the peak at a fixed token budget for 16 and 64 samples: the ratios
the memory work is judged by.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from iadr1_rl.memory.estimates import GIB  # noqa: E402
from iadr1_rl.models.backbones import BACKBONES  # noqa: E402


def _small_qwen2_vl(
    hidden: int, layers: int, intermediate: int, vocab: int, vision: int = 96, mrope: tuple = (8, 8, 8)
) -> dict:
    """A Qwen2-VL of these sizes (4 attention heads); `mrope`: M-RoPE's sections, which sum
    to half a head's dimensions."""
    return {
        "model_type": "qwen2_vl",
        "text_config": {
            "hidden_size": hidden,
            "intermediate_size": intermediate,
            "num_hidden_layers": layers,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "vocab_size": vocab,
            "tie_word_embeddings": True,
            "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope},
        },
        "vision_config": {
            "depth": 3,
            "embed_dim": vision,
            "hidden_size": hidden,
            "mlp_ratio": 3,
            "num_heads": 4,
            "patch_size": 14,
        },
        "tie_word_embeddings": True,
    }


QWEN_VOCABULARY = 151_936
# shape → (config, image size, dtype on GPU)
SHAPES = {
    "tiny": (_small_qwen2_vl(192, 3, 512, 1024), 112),
    "tiny_qwen_vocab": (_small_qwen2_vl(192, 3, 512, QWEN_VOCABULARY), 112),
    # ~100 M parameters, 128-dimensional heads
    "small_qwen_vocab": (_small_qwen2_vl(512, 8, 1408, QWEN_VOCABULARY, vision=128, mrope=(16, 24, 24)), 112),
    **{name: (config, 448) for name, (_, config) in BACKBONES.items() if config["model_type"].startswith("qwen2")},
}
GROWTH_BUDGET = 1024  # --compare: the fixed token budget 16 and 64 samples are measured at
PHASES = ("time_rollout", "time_reward", "time_reference", "time_old_logprobs", "time_train", "time_sync", "time_step")
ACTORS = ("policy", "reference", "rollout")


def build_inputs(shape: str, out: Path, dtype: str, prompts: int) -> tuple[Path, Path]:
    """The shape's model folder and a synthetic prompt set (built once under `out`)."""
    from iadr1_rl.data.prompts import prompt_text
    from iadr1_rl.data.records import load_records
    from iadr1_rl.data.synth import SynthConfig, synthesize
    from iadr1_rl.models.tiny import build_shaped_vlm

    config, image_size = SHAPES[shape]
    data = out / f"data_{image_size}"
    records = data / "records.jsonl"
    if not records.is_file():
        synthesize(data, SynthConfig(n=max(prompts, 16), seed=0, size=image_size, cot="short"))
    model = out / f"{shape}_{dtype}"
    if not (model / "config.json").is_file():
        corpus = [r.response for r in load_records(records)] + [prompt_text("train", 0).replace("{image}", "")] * 20
        build_shaped_vlm(corpus, model, config, image_size=image_size, dtype=dtype)
    return model, records


def bench_config(args, engine: str, model: Path, records: Path, run_dir: Path, world: int = 1, transport: str = "auto"):
    from iadr1_rl.train.config import load_config

    policy, reference, rollout = args.gpus
    overrides = [
        f"run_dir={run_dir}",
        f"model.path={model}",
        f"model.dtype={args.dtype}",
        f"model.gradient_checkpointing={str(args.gradient_checkpointing).lower()}",
        f"data.train={records}",
        f"grpo.output={run_dir / 'sc_grpo'}",
        f"grpo.init={model}",
        f"grpo.steps={args.steps}",
        f"grpo.prompts_per_step={args.prompts}",
        f"grpo.group_size={args.group}",
        f"grpo.max_new_tokens={args.new_tokens}",
        "grpo.drop_no_signal=false",  # a random model earns no reward: train on every group anyway
        f"checkpoint.every={args.steps + 1}",
        f"resources.policy.num_gpus={policy}",
        f"resources.policy.num_cpus={min(1.0, 1.0 / world)}",
        f"grpo.world_size={world}",
        f"grpo.strategy={'none' if world == 1 else 'deepspeed'}",
        "grpo.zero_stage=3",
        f"resources.reference.num_gpus={reference}",
        f"resources.rollout.num_gpus={rollout}",
        f"resources.torch_threads={args.threads}",
        f"memory.train_tokens={args.train_tokens}",
        f"rollout.engine={engine}",
        f"rollout.weight_transport={transport}",
    ]
    if rollout > 0:  # vLLM takes what it is told: at most the rollout worker's share of its GPU
        overrides.append(f"rollout.gpu_memory_utilization={min(rollout, 0.85)}")
    if args.device_gib:
        overrides.append(f"memory.device_gib={args.device_gib}")
    return load_config(ROOT / "recipes" / "configs" / "demo.yaml", overrides)


def run_steps(args, engine: str, world: int = 1, transport: str = "auto") -> dict:
    """`args.steps` SC-GRPO steps through the local backend with `engine`, the policy as
    `world` ranks and the weights sent by `transport`; phases, rates, peaks, training state,
    the sync's size and the plan."""
    from iadr1_rl.backends.local.grpo import run_grpo
    from iadr1_rl.backends.local.plan import GRPOPlan

    dtype = args.dtype
    out = Path(args.out)
    model, records = build_inputs(args.shape, out, dtype, args.prompts)
    with tempfile.TemporaryDirectory(dir=out) as run_dir:
        config = bench_config(args, engine, model, records, Path(run_dir), world, transport)
        grpo_plan = GRPOPlan.from_config(config)  # the run's own plan: its memory and transports
        plan, transports = grpo_plan.memory, grpo_plan.transports
        run_grpo(config, progress=False, run_eval=False)
        rows = [json.loads(line) for line in (Path(run_dir) / "sc_grpo" / "metrics.jsonl").read_text().splitlines()]
    timed = rows[1:] or rows  # the first step warms up
    phases = {phase: statistics.fmean(r.get(phase, 0.0) for r in timed) for phase in PHASES}
    estimates: dict[str, float] = {}
    for actor in plan.actors:  # the largest of each kind (ranks, workers)
        kind = actor.name.split()[0]
        estimates[kind] = max(estimates.get(kind, 0.0), actor.total / GIB)
    peaks = {a: max((r[f"memory_{a}_gib"] for r in rows if f"memory_{a}_gib" in r), default=None) for a in ACTORS}
    return {
        "shape": args.shape,
        "parameters_b": plan.parameters / 1e9,
        "device": "cuda" if _has_cuda() else "cpu",
        "engine": engine,
        "world": world,
        "transport": ",".join(sorted(set(transports.values()))),  # what `auto` chose, where it was asked
        "sync_gib": statistics.fmean(r.get("sync_gib", 0.0) for r in timed),
        "dtype": dtype,
        "samples_per_step": args.prompts * args.group,
        "new_tokens": args.new_tokens,
        "steps_timed": len(timed),
        "phases_s": phases,
        "tokens_per_second": statistics.fmean(r["tokens_per_second"] for r in timed),
        "peak_gib": peaks,
        "plan_gib": estimates,
        "plan_over_peak": {a: estimates[a] / peaks[a] for a in ACTORS if peaks.get(a)},
        "state_policy_gib": max(r.get("state_policy_gib", 0.0) for r in rows),
    }


def _engines(value: str) -> list[str]:
    from iadr1_rl.rollout import ENGINES

    engines = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in engines if name not in ENGINES]
    if unknown or not engines:
        raise SystemExit(f"--engine: {', '.join(unknown) or value!r} is not one of {', '.join(ENGINES)}")
    return engines


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


# ------------------------------------------------------------- one pass, own process
def one_pass(args) -> dict:
    """One policy training step or one reference pass, in this process, with the straightforward
    (`full`) or the memory-safe (`chunked`) log-probs: its peak memory."""
    import torch

    from benchmarks.baseline_logprobs import full_vocabulary_logprobs
    from iadr1_rl.actors import PolicyActor, ReferenceActor
    from iadr1_rl.data.records import load_records
    from iadr1_rl.models.encoding import encode_prompts
    from iadr1_rl.train.losses import PPOSettings
    from iadr1_rl.train.sequences import GRPOBatch, Sample

    model, records = build_inputs(args.shape, Path(args.out), args.dtype, args.samples)
    budget = args.train_tokens if args.path == "chunked" else 10**9  # the straightforward path: one batch
    device = "cuda:0" if _has_cuda() else "cpu"  # this process, outside Ray: its own device
    kwargs = {"dtype": args.dtype, "torch_threads": args.threads, "logprob_tokens": budget, "device": device}
    if args.actor == "policy":
        actor = PolicyActor(
            str(model), train_tokens=budget, gradient_checkpointing=args.gradient_checkpointing, **kwargs
        )
    else:
        actor = ReferenceActor(str(model), **kwargs)
    if args.path == "full":  # what the actors computed before: every position, the whole vocabulary
        module = actor.engine.module if args.actor == "policy" else None
        if module is not None:
            module.forward = lambda batch, temperature=1.0, suppressed=(): full_vocabulary_logprobs(
                module.model, batch, temperature, suppressed
            )
        else:
            import iadr1_rl.actors.base as base

            base.response_logprobs = full_vocabulary_logprobs
    chosen = load_records(records)
    prompts = encode_prompts(actor.processor, [chosen[i % len(chosen)] for i in range(args.samples)], "train")
    generator = torch.Generator().manual_seed(0)
    vocab = actor.model.get_output_embeddings().weight.shape[0]
    responses = torch.randint(0, vocab, (args.samples, args.response), generator=generator).tolist()
    samples = [Sample(p, r) for p, r in zip(prompts, responses)]
    actor.peak_memory()  # from here: the pass alone
    try:
        if args.actor == "policy":
            zeros = [[0.0] * args.response for _ in samples]
            actor.grpo_step(GRPOBatch(samples, [1.0, -1.0] * (args.samples // 2), zeros), PPOSettings())
        else:
            actor.response_logprobs(samples)
        peak = actor.peak_memory()
        return {
            "peak_gib": None if peak is None else peak / GIB,
            "tokens": sum(len(s.prompt) + args.response for s in samples),
        }
    except (RuntimeError, MemoryError) as error:  # past the process's memory cap
        return {"peak_gib": None, "out_of_memory": str(error).splitlines()[0][:200]}


def measure(
    shape: str, actor: str, path: str, samples: int, response: int, args, train_tokens: int | None = None
) -> dict:
    """`one_pass` in a fresh process (its peak is its own), capped at `args.cap_gib`."""
    command = [
        sys.executable,
        __file__,
        "--one-pass",
        actor,
        "--path",
        path,
        "--shape",
        shape,
        "--samples",
        str(samples),
        "--response",
        str(response),
        "--train-tokens",
        str(train_tokens or args.train_tokens),
        "--dtype",
        args.dtype,
        "--threads",
        str(args.threads),
        "--out",
        args.out,
    ]
    if args.gradient_checkpointing:
        command.append("--gradient-checkpointing")
    cap = int(args.cap_gib * GIB)

    def limit() -> None:  # an allocation past the cap fails in the child instead of the machine swapping
        resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))

    done = subprocess.run(command, capture_output=True, text=True, preexec_fn=limit, env={**os.environ})
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"peak_gib": None, "out_of_memory": f"exit {done.returncode}: {done.stderr.strip()[-300:]}"}
    return json.loads(lines[-1])


def compare(args) -> dict:
    """The memory targets, measured in this run (each pass in its own process)."""
    results: dict[str, dict] = {}
    cases = {
        # One SC-GRPO step's actors at the default settings: 8 prompts × G 4, 64 new tokens.
        "policy_step": ("tiny_qwen_vocab", "policy", 32, 64),
        "reference_pass": ("tiny_qwen_vocab", "reference", 32, 64),
        # A ~100 M-parameter model, 32 samples × ~600 tokens.
        "policy_step_100m": ("small_qwen_vocab", "policy", 32, 540),
    }
    for name, (shape, actor, samples, response) in cases.items():
        full = measure(shape, actor, "full", samples, response, args)
        chunked = measure(shape, actor, "chunked", samples, response, args)
        results[name] = {"full": full, "chunked": chunked, "ratio": _ratio(chunked, full, args.cap_gib)}
    # A budget below 16 samples' tokens (~2,100), so that both sizes split into micro-batches.
    growth = {n: measure("tiny_qwen_vocab", "policy", "chunked", n, 64, args, GROWTH_BUDGET) for n in (16, 64)}
    results["fixed_budget_16_to_64"] = {
        "16": growth[16],
        "64": growth[64],
        "growth": (growth[64]["peak_gib"] / growth[16]["peak_gib"] - 1)
        if growth[16].get("peak_gib") and growth[64].get("peak_gib")
        else None,
    }
    return results


def _ratio(new: dict, old: dict, cap: float) -> dict:
    """new / old; where the old path ran out of the cap, an upper bound (new / cap)."""
    if not new.get("peak_gib"):
        return {"value": None}
    if old.get("peak_gib"):
        return {"value": new["peak_gib"] / old["peak_gib"], "bound": False}
    return {"value": new["peak_gib"] / cap, "bound": True}


# ------------------------------------------------------------------ output
def print_steps(result: dict) -> None:
    print(
        f"\n{result['shape']} ({result['parameters_b']:.2f} B parameters, {result['dtype']}, {result['device']}, "
        f"{result['engine']} engine, {result['world']} policy rank(s), weights by {result['transport']} "
        f"({result['sync_gib']:.3f} GiB a sync)): {result['samples_per_step']} samples × "
        f"≤ {result['new_tokens']} new tokens, {result['steps_timed']} step(s) timed"
    )
    print("phase              seconds")
    for phase, seconds in result["phases_s"].items():
        print(f"  {phase.removeprefix('time_'):<16} {seconds:8.3f}")
    print(f"  tokens/s         {result['tokens_per_second']:8.1f}")
    print("actor        peak GiB   plan GiB   plan / peak")
    for actor in ACTORS:
        peak, plan = result["peak_gib"].get(actor), result["plan_gib"].get(actor)
        ratio = result["plan_over_peak"].get(actor)
        print(f"  {actor:<10} {_gib(peak):>8}   {_gib(plan):>8}   {f'{ratio:.2f}' if ratio else 'n/a':>11}")


def print_engine_ratios(results: list[dict]) -> None:
    first = results[0]
    for other in results[1:]:
        print(f"\nphase            {other['engine']} / {first['engine']} (seconds, measured in this run)")
        for phase, seconds in other["phases_s"].items():
            base = first["phases_s"][phase]
            print(f"  {phase.removeprefix('time_'):<16} {f'{seconds / base:.2f}' if base else 'n/a':>8}")


def print_world_ratios(results: list[dict]) -> None:
    first = results[0]
    print(
        f"\npolicy rank's training state (weights, gradients, master weights, optimizer), over world {first['world']}'s"
    )
    for other in results:
        ratio = other["state_policy_gib"] / first["state_policy_gib"] if first["state_policy_gib"] else float("nan")
        print(f"  world {other['world']}: {other['state_policy_gib']:.3f} GiB a rank, {ratio:.2f}")
    print("  (the same update at each world size: tests/test_grpo_ranks.py)")


def print_compare(results: dict) -> None:
    print("\npeak memory, memory-safe / straightforward log-probs (each pass in its own process)")
    for name, case in results.items():
        if name == "fixed_budget_16_to_64":
            growth = case["growth"]
            print(
                f"  {name:<22} ({GROWTH_BUDGET} tokens a micro-batch) 16: {_gib(case['16'].get('peak_gib'))} GiB, "
                f"64: {_gib(case['64'].get('peak_gib'))} GiB, "
                f"growth {growth:+.1%}"
                if growth is not None
                else f"  {name}: n/a"
            )
            continue
        ratio = case["ratio"]
        full = case["full"].get("peak_gib")
        shown = _gib(full) if full else f"> cap ({case['full'].get('out_of_memory', '')[:60]})"
        value = "n/a" if ratio["value"] is None else f"{'≤ ' if ratio.get('bound') else ''}{ratio['value']:.2f}"
        new = _gib(case["chunked"].get("peak_gib"))
        print(f"  {name:<22} straightforward {shown} GiB, memory-safe {new} GiB: {value}")


def _gib(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--shape", default="tiny", choices=sorted(SHAPES), help="the model's shapes")
    parser.add_argument("--steps", type=int, default=3, help="SC-GRPO steps (the first is not timed)")
    parser.add_argument("--prompts", type=int, default=8, help="prompts per step")
    parser.add_argument("--group", type=int, default=4, help="completions per prompt (G)")
    parser.add_argument("--new-tokens", type=int, default=64, help="the most new tokens per completion")
    parser.add_argument("--engine", default="hf", help="rollout.engine; several, comma-separated, run in turn")
    parser.add_argument("--world", default="1", help="policy ranks (ZeRO-3 above 1); several, comma-separated")
    parser.add_argument(
        "--transport", default="auto", help="rollout.weight_transport (GPUs: ipc, nccl); several, comma-separated"
    )
    parser.add_argument("--dtype", default=None, help="default: bfloat16 on a GPU, float32 on CPU")
    parser.add_argument("--gpus", default="0,0,0", help="policy,reference,rollout GPU shares (0: CPU)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per actor (0: torch's choice)")
    parser.add_argument("--train-tokens", type=int, default=16384, help="memory.train_tokens")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="model.gradient_checkpointing")
    parser.add_argument("--device-gib", type=float, default=None, help="memory.device_gib")
    parser.add_argument("--compare", action="store_true", help="memory-safe vs straightforward log-probs")
    parser.add_argument("--cap-gib", type=float, default=18.0, help="--compare: each pass's memory cap")
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench"), help="models, data and runs go here")
    parser.add_argument("--json", type=Path, help="also write the results here")
    # one measured pass (what --compare runs in a child process)
    parser.add_argument("--one-pass", choices=("policy", "reference"), help=argparse.SUPPRESS)
    parser.add_argument("--path", choices=("full", "chunked"), default="chunked", help=argparse.SUPPRESS)
    parser.add_argument("--samples", type=int, default=32, help=argparse.SUPPRESS)
    parser.add_argument("--response", type=int, default=64, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.dtype = args.dtype or ("bfloat16" if _has_cuda() else "float32")
    args.gpus = [float(x) for x in args.gpus.split(",")]
    if len(args.gpus) != 3:
        raise SystemExit("--gpus takes three shares: policy,reference,rollout")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.WARNING)
    if args.one_pass:
        args.actor = args.one_pass
        print(json.dumps(one_pass(args)))
        return 0
    if args.compare:
        result = {"compare": compare(args)}
        print_compare(result["compare"])
    else:
        worlds = [int(w) for w in args.world.split(",") if w.strip()]
        transports = [t.strip() for t in args.transport.split(",") if t.strip()]
        result = {
            "steps": [
                run_steps(args, engine, world, transport)
                for engine in _engines(args.engine)
                for world in worlds
                for transport in transports
            ]
        }
        for steps in result["steps"]:
            print_steps(steps)
        if len(worlds) > 1:
            print_world_ratios(result["steps"])
        else:
            print_engine_ratios(result["steps"])
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    sys.exit(main())
