"""Throughput and latency of the reward server under concurrent clients (loopback only).

Starts `iadr1-reward-server` on a free 127.0.0.1 port with 1, then 2 workers, and drives
it with concurrent aiohttp clients (OpenRLHF's own HTTP client library) in two shapes:
one completion per request (OpenRLHF's real calling pattern: its vLLM engines send one
sample at a time) and a GRPO group of 16 per request. Prints completions/s, p50/p99
latency and the ratio of served throughput to in-process scoring of the same queries
(`protocol.score_queries`), measured in this run. Request loops are bounded in count
and time.

    python benchmarks/bench_server.py [--requests 2000] [--concurrency 32]
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

from benchmarks.corpus import distinct_labels, rollout_corpus  # noqa: E402
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


def in_process_rate(queries: list[str], labels: list[dict]) -> float:
    """Completions per second scoring the same queries in this process (no HTTP, no JSON)."""
    from rewards.wire import score_queries

    scorer = Scorer()
    start = time.perf_counter()
    score_queries(scorer, queries, [PROMPT] * len(queries), labels)
    return len(queries) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per shape at most")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent clients")
    parser.add_argument("--time-limit", type=float, default=30.0, help="seconds per shape at most")
    args = parser.parse_args()

    completions, labels = rollout_corpus(args.requests * 16, seed=0, group_size=16)
    queries = [query(c) for c in completions]
    decoded = distinct_labels(labels, as_text=False)  # an HTTP body decodes a new dict per item
    in_process = in_process_rate(queries, decoded)
    print(f"in-process score_queries: {in_process:,.0f} completions/s; {args.concurrency} concurrent clients, loopback")
    shapes = {
        1: [{"query": [q], "prompts": [PROMPT], "labels": [lab]} for q, lab in zip(queries, decoded)],
        16: [
            {"query": queries[i : i + 16], "prompts": [PROMPT] * 16, "labels": decoded[i : i + 16]}
            for i in range(0, len(queries), 16)
        ],
    }
    columns = ("workers", "batch", "completions/s", "requests/s", "p50 ms", "p99 ms", "/ in-process")
    print(" ".join(f"{c:>{w}}" for c, w in zip(columns, (7, 5, 14, 11, 7, 7, 13))))
    for workers in (1, 2):
        process, url = start_server(workers)
        try:
            for batch, bodies in shapes.items():
                elapsed, latencies, sent = asyncio.run(
                    drive(url, bodies[: args.requests], args.concurrency, args.time_limit)
                )
                rate = sent / elapsed
                print(
                    f"{workers:>7} {batch:>5} {rate:>14,.0f} {len(latencies) / elapsed:>11,.0f} "
                    f"{percentile(latencies, 50) * 1000:>7.1f} {percentile(latencies, 99) * 1000:>7.1f} "
                    f"{rate / in_process:>13.3f}"
                )
        finally:
            process.terminate()
            process.wait(timeout=10)


if __name__ == "__main__":
    main()
