"""The reward server under faults and load, as a hostile or broken client would bring them
(loopback only; every loop is bounded in count and in time)."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time

import httpx
import psutil
import pytest

GOOD = "<think>a dark hole</think><location>top left</location><type>holes</type><answer>yes</answer>"
LABEL = {"answer": "yes", "location": "upper left", "type": "hole"}
REWARD = {"query": [GOOD], "prompts": [""], "labels": [LABEL]}  # OpenRLHF's one sample per request


def server_memory_mb(pid: int) -> float:
    """Resident memory of the server and its workers."""
    process = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)]) / 2**20


def workers(pid: int) -> set[int]:
    return {p.pid for p in psutil.Process(pid).children() if "spawn_main" in " ".join(p.cmdline())}


def connect(server, timeout: float = 10.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=timeout)


def read_to_end(sock: socket.socket) -> bytes:
    answer = b""
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return answer


def read_response(sock: socket.socket) -> tuple[int | None, bytes]:
    """The status and body of the first final answer (no waiting for keep-alive to end)."""
    data = b""
    while True:
        head, separator, rest = data.partition(b"\r\n\r\n")
        if separator and head.startswith(b"HTTP/1.1 100"):  # the interim answer to Expect: 100-continue
            data = rest
            continue
        if separator:
            lines = head.split(b"\r\n")
            length = next(
                (int(v) for k, _, v in (x.partition(b":") for x in lines[1:]) if k.lower() == b"content-length"), None
            )
            if length is not None and len(rest) >= length:
                return int(lines[0].split(b" ", 2)[1]), rest[:length]
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            chunk = b""
        if not chunk:
            return (int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.1 ") else None), rest
        data += chunk


def healthy(server) -> bool:
    return httpx.post(server.url + "/get_reward", json=REWARD, timeout=10).json()["rewards"] == [4.0]


def test_a_header_bomb_gets_431_and_costs_no_memory(start_server):
    server = start_server()
    with connect(server) as sock:  # a whole oversized head in one read
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n")
        answer = read_to_end(sock)
    assert answer.startswith(b"HTTP/1.1 431") and b'"error": "request line and headers over the limit' in answer
    before = server_memory_mb(server.process.pid)
    sent = 0
    with connect(server) as sock:  # 64 MB of headers, as fast as the server takes them
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        line = b"X-Bomb: " + b"b" * 8000 + b"\r\n"
        try:
            while sent < 64 * 2**20:
                sock.sendall(line)
                sent += len(line)
        except OSError:  # the server closed the connection
            pass
    assert sent < 4 * 2**20  # it stopped reading long before the end
    assert server_memory_mb(server.process.pid) < before + 20
    assert healthy(server)


def slowloris(server, stop: threading.Event, closed: list[float]) -> None:
    """Send a request head one header line a second, until the server hangs up."""
    started = time.monotonic()
    try:
        with connect(server, timeout=1) as sock:
            sock.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\n")
            while not stop.is_set():
                sock.sendall(b"X-Slow: 1\r\n")
                try:
                    sock.recv(1024)  # an answer (408) or EOF: the server hung up
                except TimeoutError:
                    continue  # a second passed: one more line
                closed.append(time.monotonic() - started)
                return
    except OSError:
        closed.append(time.monotonic() - started)


def test_fifty_slowloris_connections_while_clients_are_served(start_server):
    server = start_server("--header-timeout", "2")
    stop, closed = threading.Event(), []
    attackers = [threading.Thread(target=slowloris, args=(server, stop, closed)) for _ in range(50)]
    for thread in attackers:
        thread.start()
    time.sleep(0.5)
    with httpx.Client(timeout=10) as client:  # real clients, served meanwhile
        answers = [client.post(server.url + "/get_reward", json=REWARD).status_code for _ in range(50)]
    deadline = time.monotonic() + 10
    while len(closed) < 50 and time.monotonic() < deadline:
        time.sleep(0.1)
    stop.set()
    for thread in attackers:
        thread.join(timeout=5)
    assert answers == [200] * 50
    assert len(closed) == 50 and max(closed) < 2 + 3  # each hung up once its header time ran out
    assert 'iadr1_reward_connection_timeouts_total{phase="head"} 50.0' in httpx.get(server.url + "/metrics").text


def test_idle_connections_are_closed(start_server):
    server = start_server("--header-timeout", "2", "--keep-alive-timeout", "1")
    sockets = [connect(server) for _ in range(20)]  # opened, then silent
    started = time.monotonic()
    for sock in sockets:
        assert sock.recv(100) == b""  # the server hangs up
        sock.close()
    assert time.monotonic() - started < 2 + 3
    with connect(server) as sock:  # idle after a response: the keep-alive timeout
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.2)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        assert sock.recv(100) == b""
        assert time.monotonic() - started < 1 + 3


def test_a_stalled_body_gets_408(start_server):
    server = start_server("--body-timeout", "1")
    with connect(server) as sock:
        sock.sendall(
            b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
        )
        answer = read_to_end(sock)
    assert answer.startswith(b"HTTP/1.1 408") and b"body not received within 1 s" in answer
    assert healthy(server)


def hammer(url: str, stop: threading.Event, outcomes: list[bool], body: dict) -> None:
    with httpx.Client(timeout=10) as client:
        while not stop.is_set():
            try:
                outcomes.append(client.post(url, json=body).status_code == 200)
            except httpx.HTTPError:
                outcomes.append(False)


def run_clients(url: str, clients: int, seconds: float, during=None) -> list[bool]:
    """`clients` threads posting one sample at a time for `seconds`; `during()` runs meanwhile."""
    stop, outcomes = threading.Event(), []
    threads = [threading.Thread(target=hammer, args=(url, stop, outcomes, REWARD)) for _ in range(clients)]
    for thread in threads:
        thread.start()
    if during is not None:
        during()
    time.sleep(max(0.0, seconds))
    stop.set()
    for thread in threads:
        thread.join(timeout=15)
    return outcomes


def test_a_killed_worker_is_replaced_under_load(start_server):
    server = start_server("--workers", "2")
    first = workers(server.process.pid)
    assert len(first) == 2

    def kill_one():
        time.sleep(2)
        psutil.Process(min(first)).send_signal(signal.SIGKILL)

    outcomes = run_clients(server.url + "/get_reward", clients=8, seconds=6, during=kill_one)
    failed = outcomes.count(False)
    assert len(outcomes) > 500 and failed <= 0.01 * len(outcomes), (failed, len(outcomes))
    deadline = time.monotonic() + 20
    while len(now := workers(server.process.pid)) < 2:  # uvicorn's supervisor starts a new one
        assert time.monotonic() < deadline, now
        time.sleep(0.2)
    assert now != first and healthy(server)


def test_sixteen_clients_for_twelve_seconds(start_server):
    server = start_server()
    samples = []

    def measure_after_warm_up():
        time.sleep(3)
        samples.append(server_memory_mb(server.process.pid))

    outcomes = run_clients(server.url + "/get_reward", clients=16, seconds=9, during=measure_after_warm_up)
    samples.append(server_memory_mb(server.process.pid))
    assert len(outcomes) > 1000 and all(outcomes), outcomes.count(False)
    assert samples[1] < samples[0] + 15, samples  # memory flat once warm
    text = httpx.get(server.url + "/metrics").text
    assert f'iadr1_reward_requests_total{{endpoint="/get_reward",status="200"}} {len(outcomes)}.0' in text


RAW_BAD_REQUESTS = [
    # (what, bytes sent, statuses acceptable)
    ("garbage request line", b"GARBAGE\r\n\r\n", (400,)),
    ("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", (400, 404, 405)),
    ("header without a colon", b"GET /health HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", (400,)),
    (
        "two different lengths",
        b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n{}",
        (400,),
    ),
    ("negative length", b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", (400,)),
    ("length not a number", b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n", (400,)),
    ("bad chunk size", b"POST /score HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", (400, 422)),
    ("NUL in the path", b"GET /he\x00alth HTTP/1.1\r\nHost: x\r\n\r\n", (400, 404)),
    ("long but allowed path", b"GET /" + b"p" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", (404,)),
    ("path over the head limit", b"GET /" + b"p" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", (431,)),
    ("unknown method", b"BREW /score HTTP/1.1\r\nHost: x\r\n\r\n", (405,)),
    ("PUT on an endpoint", b"PUT /score HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}", (405,)),
    (
        "expect-continue over the body limit",
        b"POST /score HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 99999999\r\n\r\n",
        (413,),
    ),
    (
        "JSON that is a number",
        b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1\r\n\r\n7",
        (422,),
    ),
    (
        "not JSON at all",
        b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 3\r\n\r\n\xff\xfe\x00",
        (400,),
    ),
]


@pytest.fixture(scope="module")
def shared_server():
    from .conftest import RunningServer

    running = RunningServer("--header-timeout", "3")
    yield running
    running.stop()


@pytest.mark.parametrize(("what", "data", "statuses"), RAW_BAD_REQUESTS, ids=[r[0] for r in RAW_BAD_REQUESTS])
def test_every_bad_request_class_gets_a_4xx_and_the_server_serves_on(shared_server, what, data, statuses):
    with connect(shared_server) as sock:
        sock.sendall(data)
        status, body = read_response(sock)
    assert status in statuses, (status, body[:200])
    if body:
        assert list(json.loads(body)) == ["error"]
    assert healthy(shared_server)
    assert 'status="500"' not in httpx.get(shared_server.url + "/metrics").text
