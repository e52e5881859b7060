"""Throughput and latency of the reward server under concurrent clients (loopback only).

Starts `iadr1-reward-server` on a free 127.0.0.1 port, then drives it with concurrent
clients in two shapes: one GRPO group (16 completions) per request, and one completion
per request (what OpenRLHF sends). Prints completions/s, p50/p99 latency and the ratio
of served throughput to in-process `score_batch` throughput measured in this run.
Request loops are bounded in count and time.

    python benchmarks/bench_server.py [--requests 400] [--concurrency 16] [--workers 1]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.corpus import rollout_corpus  # noqa: E402
from iadr1_rl.train.distributed import free_port  # noqa: E402
from rewards import Scorer  # noqa: E402

PROMPT = (
    "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Are there any defects?<|im_end|>\n"
    "<|im_start|>assistant\n"
)


def start_server(workers: int) -> tuple[subprocess.Popen, str]:
    port = free_port("127.0.0.1")
    env = {k: v for k, v in os.environ.items() if not k.startswith("IADR1_")}
    command = [sys.executable, "-m", "rewards.server", "--port", str(port), "--workers", str(workers)]
    process = subprocess.Popen([*command, "--log-level", "error"], cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("server did not start")


def query(completion: str) -> str:
    return PROMPT.replace("<|image_pad|>", "<|image_pad|>" * 64) + completion + "<|im_end|>"


async def drive(url: str, bodies: list[dict], concurrency: int, time_limit: float) -> tuple[float, list[float], int]:
    """Concurrent clients with aiohttp, the HTTP client OpenRLHF itself uses."""
    import aiohttp

    latencies: list[float] = []
    sent = 0
    queue = list(reversed(bodies))
    deadline = time.monotonic() + time_limit

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal sent
        while queue and time.monotonic() < deadline:
            body = queue.pop()
            start = time.perf_counter()
            async with session.post(url + "/get_reward", json=body) as reply:
                reply.raise_for_status()
                await reply.json()
            latencies.append(time.perf_counter() - start)
            sent += len(body["query"])

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        start = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return elapsed, latencies, sent


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=400, help="requests per shape")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds per shape at most")
    args = parser.parse_args()

    completions, labels = rollout_corpus(args.requests * 16, seed=0, group_size=16)
    scorer = Scorer()
    start = time.perf_counter()
    scorer.score_batch(completions, labels)
    in_process = len(completions) / (time.perf_counter() - start)
    print(f"in-process score_batch: {in_process:,.0f} completions/s")

    groups = [
        {"query": [query(c) for c in completions[i : i + 16]], "prompts": [PROMPT] * 16, "labels": labels[i : i + 16]}
        for i in range(0, len(completions), 16)
    ][: args.requests]
    singles = [{"query": [query(c)], "prompts": [PROMPT], "labels": [lab]} for c, lab in zip(completions, labels)][
        : args.requests
    ]

    process, url = start_server(args.workers)
    try:
        print(f"server: {args.workers} worker(s), {args.concurrency} concurrent clients, loopback")
        for name, bodies in (("group of 16 per request", groups), ("1 completion per request", singles)):
            elapsed, latencies, sent = asyncio.run(drive(url, bodies, args.concurrency, args.time_limit))
            rate = sent / elapsed
            print(
                f"{name:>26}: {rate:9,.0f} completions/s  {len(latencies) / elapsed:7,.0f} requests/s  "
                f"p50 {percentile(latencies, 50) * 1000:6.1f} ms  p99 {percentile(latencies, 99) * 1000:6.1f} ms  "
                f"served/in-process {rate / in_process:.3f}"
            )
    finally:
        process.terminate()
        process.wait(timeout=10)


if __name__ == "__main__":
    main()
