"""The reward server over real HTTP: a real `iadr1-reward-server` process per test."""

import json
import os
import socket
import time

import httpx
import pytest

from rewards import Scorer

GOOD = "<think>a dark hole</think><location>top left</location><type>holes</type><answer>yes</answer>"
NORMAL = "<think>uniform</think><answer>no</answer>"
LABEL = {"answer": "yes", "location": "upper left", "type": "hole"}
QWEN_PROMPT = (
    "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Are there any defects in the test image?"
    "<|im_end|>\n<|im_start|>assistant\n"
)
JSON_HEAD = b"POST /score HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"


def vlm_query(response: str) -> str:
    return QWEN_PROMPT.replace("<|image_pad|>", "<|image_pad|>" * 64) + response + "<|im_end|>"


def raw_request(server, data: bytes) -> bytes:
    """Send bytes as they are (httpx refuses odd headers) and read the answer to the end."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


@pytest.fixture(scope="module")
def server():
    """One server for the tests that only send requests (each leaves it as it found it)."""
    from .conftest import RunningServer

    running = RunningServer()
    yield running
    running.stop()


def test_get_reward_round_trip_equals_in_process(server):
    responses = [GOOD, NORMAL, "junk", GOOD.replace("top left", "center")]
    labels = [LABEL, {"answer": "no"}, LABEL, json.dumps(LABEL)]
    body = {"query": [vlm_query(r) for r in responses], "prompts": [QWEN_PROMPT] * 4, "labels": labels}
    reply = httpx.post(server.url + "/get_reward", json=body)
    assert reply.status_code == 200
    data = reply.json()
    expected = Scorer().score_batch(responses, labels)
    assert data["rewards"] == [r.total for r in expected] == [4.0, 2.0, 0.0, 3.0]
    assert data["scores"] == [r.normalised for r in expected]
    assert data["extra_logs"]["location"] == [1.0, 0.0, 0.0, 0.0]


def test_score_native_and_group(server):
    reply = httpx.post(server.url + "/score", json={"completions": [GOOD, NORMAL], "labels": [LABEL, LABEL]})
    assert reply.status_code == 200
    results = reply.json()["results"]
    assert results[0]["type_rule"] == "exact" and results[0]["predicted_cells"] == [1]
    assert results[1]["answer"] == "no" and results[1]["type_rule"] is None
    group = httpx.post(
        server.url + "/score", json={"completions": [GOOD, NORMAL, GOOD, NORMAL], "labels": [LABEL], "group": True}
    ).json()
    in_process = Scorer().score_group([GOOD, NORMAL, GOOD, NORMAL], LABEL)
    assert group["advantages"] == pytest.approx(in_process.advantages)
    assert group["has_signal"] is True and len(group["results"]) == 4


DEEP_LABEL = '{"answer": ' + "[" * 5000 + "]" * 5000 + "}"
BAD_REQUESTS = [
    # (path, raw body or JSON, status, words in the error)
    ("/get_reward", b"{not json", 400, "not valid JSON"),
    ("/get_reward", {"prompts": [""], "labels": [LABEL]}, 422, "query"),  # missing field
    ("/get_reward", {"query": "one string", "prompts": [""], "labels": [LABEL]}, 422, "query"),  # wrong type
    ("/get_reward", {"query": [1], "prompts": [""], "labels": [LABEL]}, 422, "query.0"),  # item type
    ("/get_reward", {"query": ["a", "b"], "prompts": [""], "labels": [LABEL]}, 422, "lengths differ"),
    (
        "/get_reward",
        {"query": ["a", "b"], "prompts": ["", ""], "labels": [LABEL, {"answer": "perhaps"}]},
        422,
        "labels[1]",
    ),  # an invalid label, named
    ("/get_reward", {"query": ["a"], "prompts": [""], "labels": [7]}, 422, "labels.0"),
    ("/score", {"completions": ["a"], "labels": [LABEL], "extra": 1}, 422, "extra"),
    ("/score", {"completions": ["a", "b"], "labels": [LABEL, LABEL], "group": True}, 422, "exactly one label"),
    ("/score", {"completions": ["a"], "labels": ["<think>no answer</think>"]}, 422, "exactly one <answer>"),
    ("/score", [1, 2], 422, "invalid request"),
    ("/score", {"completions": ["a"], "labels": [DEEP_LABEL]}, 422, "nested too deeply"),  # was a 500
    ("/score", {"completions": ["a"], "labels": [{"answer": "yes", "type": {"a": {"b": 1}}}]}, 422, "type must be"),
    ("/score", b'{"completions": ["a"], "labels": [' + b"[" * 3000 + b"]" * 3000 + b"]}", 400, "parsing the body"),
    ("/score", {"completions": ["x" * 300_000], "labels": [LABEL]}, 413, "characters; the limit is"),
    ("/get_reward", {"query": ["a"], "prompts": ["p" * 300_000], "labels": [LABEL]}, 413, "characters"),
    ("/score", {"completions": ["a"], "labels": [{"answer": "yes", "type": "t" * 300_000}]}, 413, "characters"),
    ("/no/such/path", {}, 404, "Not Found"),
    ("/health", {}, 405, "Method Not Allowed"),
]


@pytest.mark.parametrize(("path", "body", "status", "words"), BAD_REQUESTS)
def test_bad_requests_get_clear_4xx(server, path, body, status, words):
    if isinstance(body, bytes):
        reply = httpx.post(server.url + path, content=body, headers={"content-type": "application/json"})
    else:
        reply = httpx.post(server.url + path, json=body)
    assert reply.status_code == status
    assert list(reply.json()) == ["error"] and words in reply.json()["error"]  # one error shape
    # The server is still healthy and scores correctly after the bad request.
    good = httpx.post(server.url + "/score", json={"completions": [GOOD], "labels": [LABEL]})
    assert good.status_code == 200 and good.json()["results"][0]["total"] == 4.0


def test_limits(start_server):
    server = start_server("--max-body-bytes", "2000", "--max-items", "3")
    too_many = httpx.post(server.url + "/score", json={"completions": ["a"] * 4, "labels": [LABEL] * 4})
    assert too_many.status_code == 413 and "limit is 3" in too_many.json()["error"]
    big = {"completions": ["x" * 3000], "labels": [LABEL]}
    over = httpx.post(server.url + "/score", json=big)
    assert over.status_code == 413 and "2000 bytes" in over.json()["error"]

    def chunks():
        yield b'{"completions": ["'
        for _ in range(10):
            yield b"x" * 500
        yield b'"], "labels": [{"answer": "no"}]}'

    chunked = httpx.post(server.url + "/score", content=chunks(), headers={"content-type": "application/json"})
    assert chunked.status_code == 413  # no Content-Length: counted while reading
    assert httpx.post(server.url + "/score", json={"completions": ["a"], "labels": [LABEL]}).status_code == 200
    metrics = httpx.get(server.url + "/metrics").text
    assert 'iadr1_reward_errors_total{kind="body_too_large"} 2.0' in metrics
    assert 'iadr1_reward_errors_total{kind="too_many_items"} 1.0' in metrics


def test_oversized_content_length_is_refused_before_the_body_is_read(start_server):
    server = start_server("--max-body-bytes", "1000")
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(JSON_HEAD + b"Content-Length: 100000000\r\n\r\n{")
        sock.settimeout(10)
        head = sock.recv(4096).decode()
    assert head.startswith("HTTP/1.1 413")


def test_token_required_when_set(start_server):
    server = start_server(env={"IADR1_REWARD_TOKEN": "s3cret"})
    body = {"completions": [GOOD], "labels": [LABEL]}
    assert httpx.post(server.url + "/score", json=body).status_code == 401
    wrong = httpx.post(server.url + "/score", json=body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    assert wrong.json() == {"error": "missing or wrong bearer token"}
    right = httpx.post(server.url + "/score", json=body, headers={"Authorization": "Bearer s3cret"})
    assert right.status_code == 200
    reward = {"query": [GOOD], "prompts": [""], "labels": [LABEL]}
    assert httpx.post(server.url + "/get_reward", json=reward).status_code == 401
    assert httpx.get(server.url + "/docs").status_code == 401  # every path but /health and /metrics
    health = httpx.get(server.url + "/health").json()
    assert set(health) == {"status", "grid", "auth", "scorer"} and health["auth"] is True  # open, and no more
    assert httpx.get(server.url + "/metrics").status_code == 200


@pytest.mark.parametrize(
    "authorization",
    ["Bearer é".encode(), "Bearer é".encode("latin-1"), b"Bearer s3cret\xff", b"Basic s3cret", b"Bearer", None],
    ids=["utf-8", "latin-1", "trailing byte", "basic", "no token", "no header"],
)
def test_odd_tokens_get_401_never_500(start_server, authorization):
    server = start_server(env={"IADR1_REWARD_TOKEN": "s3cret"})
    body = json.dumps({"completions": [GOOD], "labels": [LABEL]}).encode()
    head = JSON_HEAD + (b"Authorization: " + authorization + b"\r\n" if authorization is not None else b"")
    answer = raw_request(server, head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:80]


def test_auth_comes_before_the_body(start_server):
    """Without the token no body is parsed or measured: not 400, 413 or 422, but 401."""
    server = start_server(env={"IADR1_REWARD_TOKEN": "s3cret"})
    for body, length in ((b"{not json", 9), (b"[1, 2]", 6), (b"{", 100_000_000)):
        answer = raw_request(server, JSON_HEAD + b"Content-Length: %d\r\n\r\n" % length + body)
        assert answer.startswith(b"HTTP/1.1 401"), answer[:80]
    metrics = httpx.get(server.url + "/metrics").text
    assert 'iadr1_reward_errors_total{kind="unauthorised"} 3.0' in metrics
    assert "bad_json" not in metrics and "body_too_large" not in metrics


def test_token_from_a_file_and_the_flag(start_server, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    server = start_server("--token-file", str(token_file))
    body = {"completions": [GOOD], "labels": [LABEL]}
    assert httpx.post(server.url + "/score", json=body).status_code == 401
    ok = httpx.post(server.url + "/score", json=body, headers={"Authorization": "Bearer from-file"})
    assert ok.status_code == 200
    flagged = start_server("--token", "on-the-command-line")
    ok = httpx.post(flagged.url + "/score", json=body, headers={"Authorization": "Bearer on-the-command-line"})
    assert ok.status_code == 200
    flagged.stop()
    assert "visible to every local user" in flagged.process.stdout.read()


def test_metrics_and_openapi(start_server):
    server = start_server()  # its own: the counts start at zero
    httpx.post(server.url + "/score", json={"completions": [GOOD, NORMAL], "labels": [LABEL, LABEL]})
    httpx.post(server.url + "/score", content=b"{", headers={"content-type": "application/json"})
    httpx.get(server.url + "/no/such/path")
    text = httpx.get(server.url + "/metrics").text
    assert 'iadr1_reward_requests_total{endpoint="/score",status="200"} 1.0' in text
    assert "iadr1_reward_completions_scored_total 2.0" in text
    assert 'iadr1_reward_errors_total{kind="bad_json"} 1.0' in text
    assert 'endpoint="other",status="404"' in text  # unknown paths do not grow the label set
    assert 'iadr1_reward_request_seconds_bucket{endpoint="/score",le="0.01"}' in text
    assert "iadr1_reward_requests_in_flight 1.0" in text  # this very request
    schema = httpx.get(server.url + "/openapi.json").json()
    assert {"/get_reward", "/score", "/health"} <= set(schema["paths"])


def test_a_client_that_leaves_mid_body_is_a_499(start_server):
    server = start_server()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(JSON_HEAD + b"Content-Length: 1000\r\n\r\n{")
        time.sleep(0.3)
    deadline = time.monotonic() + 10
    while 'status="499"' not in (text := httpx.get(server.url + "/metrics").text):
        assert time.monotonic() < deadline, text
        time.sleep(0.1)
    assert 'iadr1_reward_requests_total{endpoint="/score",status="499"} 1.0' in text
    assert 'status="500"' not in text


def test_workers_report_true_totals(start_server):
    server = start_server("--workers", "2")
    for _ in range(40):  # a new connection each: the two workers share them
        with httpx.Client() as client:
            reply = client.post(server.url + "/score", json={"completions": [GOOD], "labels": [LABEL]})
            assert reply.status_code == 200
    text = httpx.get(server.url + "/metrics").text
    assert 'iadr1_reward_requests_total{endpoint="/score",status="200"} 40.0' in text
    assert "iadr1_reward_completions_scored_total 40.0" in text


STARTUP_REFUSALS = [
    # (arguments, environment, words the message must contain)
    (["--port", "99999"], {}, "not a TCP port"),
    (["--port", "0"], {}, "not a TCP port"),
    (["--host", "0.0.0.0"], {}, "without a token"),
    (["--host", "::"], {}, "without a token"),
    (["--host", "no-such-host.invalid"], {}, "resolves"),
    (["--workers", "0"], {}, "--workers 0"),
    (["--workers", "100000"], {}, "between 1 and"),
    (["--max-items", "0"], {}, "--max-items must be at least 1"),
    (["--header-timeout", "0"], {}, "above 0 seconds"),
    (["--config", "missing.yaml"], {}, "--config: file not found"),
    (["--config", "README.md"], {}, "--config"),
    (["--token", "with space"], {}, "printable ASCII"),
    ([], {"IADR1_REWARD_TOKEN": "tökén"}, "printable ASCII"),
    (["--token-file", "/no/such/token"], {}, "cannot read"),
]


@pytest.mark.parametrize(("arguments", "environment", "words"), STARTUP_REFUSALS)
def test_unsafe_or_impossible_start_up_is_refused(arguments, environment, words, monkeypatch, capsys):
    import uvicorn

    from rewards.server import main

    started = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: started.append(k))
    clean = {k: v for k, v in os.environ.items() if not k.startswith("IADR1_")}
    monkeypatch.setattr(os, "environ", {**clean, **environment})
    with pytest.raises(SystemExit) as exited:
        main(arguments)
    assert exited.value.code == 2 and words in capsys.readouterr().err and not started


def test_binds_loopback_by_default(monkeypatch):
    import uvicorn

    from rewards.server import main

    started = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: started.update(kwargs))
    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items() if not k.startswith("IADR1_")})
    assert main([]) == 0
    assert started["host"] == "127.0.0.1" and started["port"] == 5000 and started["workers"] == 1
    assert started["http"] == "rewards.server.h11_guard:GuardedH11Protocol"
    assert started["h11_max_incomplete_event_size"] == 16 * 1024 and started["timeout_keep_alive"] == 5.0
    started.clear()
    assert main(["--host", "0.0.0.0", "--allow-unauthenticated"]) == 0 and started["host"] == "0.0.0.0"


def test_config_file_and_workers(start_server, tmp_path):
    config = tmp_path / "scorer.json"
    config.write_text(json.dumps({"weights": {"type": 2}}))
    server = start_server("--config", str(config), "--workers", "2")
    reply = httpx.post(server.url + "/score", json={"completions": [GOOD], "labels": [LABEL]})
    assert reply.json()["results"][0]["total"] == 5.0
    assert httpx.get(server.url + "/health").json()["scorer"]["digest"] == Scorer.from_config(config).digest


def test_openrlhf_http_client_reaches_server(server, openrlhf_execute):
    output, _ = openrlhf_execute(server.url + "/get_reward", LABEL, GOOD + "<|im_end|>")
    assert float(output["reward"][0]) == 4.0
    assert float(output["scores"][0]) == 1.0
    assert float(output["extra_logs"]["type"][0]) == 1.0
