"""The reward server over real HTTP: a real `iadr1-reward-server` process per test."""

import json
import os
import socket

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


def vlm_query(response: str) -> str:
    return QWEN_PROMPT.replace("<|image_pad|>", "<|image_pad|>" * 64) + response + "<|im_end|>"


@pytest.fixture
def server(start_server):
    return start_server()


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
]


@pytest.mark.parametrize(("path", "body", "status", "words"), BAD_REQUESTS)
def test_bad_requests_get_clear_4xx(server, path, body, status, words):
    if isinstance(body, bytes):
        reply = httpx.post(server.url + path, content=body, headers={"content-type": "application/json"})
    else:
        reply = httpx.post(server.url + path, json=body)
    assert reply.status_code == status
    assert words in reply.json()["error"]
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
    assert 'iadr1_reward_errors_total{kind="body_too_large"} 2' in metrics
    assert 'iadr1_reward_errors_total{kind="too_many_items"} 1' in metrics


def test_oversized_content_length_is_refused_before_the_body_is_read(start_server):
    server = start_server("--max-body-bytes", "1000")
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n{"
        )
        sock.settimeout(10)
        head = sock.recv(4096).decode()
    assert head.startswith("HTTP/1.1 413")


def test_token_required_when_set(start_server):
    server = start_server("--token", "s3cret")
    body = {"completions": [GOOD], "labels": [LABEL]}
    assert httpx.post(server.url + "/score", json=body).status_code == 401
    wrong = httpx.post(server.url + "/score", json=body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    right = httpx.post(server.url + "/score", json=body, headers={"Authorization": "Bearer s3cret"})
    assert right.status_code == 200
    reward = {"query": [GOOD], "prompts": [""], "labels": [LABEL]}
    assert httpx.post(server.url + "/get_reward", json=reward).status_code == 401
    assert httpx.get(server.url + "/health").json()["auth"] is True  # health stays open


def test_token_from_environment(start_server):
    server = start_server(env={"IADR1_REWARD_TOKEN": "from-env"})
    body = {"completions": [GOOD], "labels": [LABEL]}
    assert httpx.post(server.url + "/score", json=body).status_code == 401
    ok = httpx.post(server.url + "/score", json=body, headers={"Authorization": "Bearer from-env"})
    assert ok.status_code == 200


def test_metrics_and_openapi(server):
    httpx.post(server.url + "/score", json={"completions": [GOOD, NORMAL], "labels": [LABEL, LABEL]})
    httpx.post(server.url + "/score", content=b"{", headers={"content-type": "application/json"})
    httpx.get(server.url + "/no/such/path")
    text = httpx.get(server.url + "/metrics").text
    assert 'iadr1_reward_requests_total{endpoint="/score",status="200"} 1' in text
    assert "iadr1_reward_completions_scored_total 2" in text
    assert 'iadr1_reward_errors_total{kind="bad_json"} 1' in text
    assert 'endpoint="other",status="404"' in text  # unknown paths do not grow the label set
    assert "iadr1_reward_request_seconds_bucket" in text
    schema = httpx.get(server.url + "/openapi.json").json()
    assert {"/get_reward", "/score", "/health"} <= set(schema["paths"])


def test_binds_loopback_by_default(monkeypatch):
    import uvicorn

    from rewards.server import main

    started = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: started.update(kwargs))
    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items() if not k.startswith("IADR1_")})
    assert main([]) == 0
    assert started["host"] == "127.0.0.1" and started["port"] == 5000 and started["workers"] == 1
    with pytest.raises(SystemExit):
        main(["--workers", "0"])


def test_config_file_and_workers(start_server, tmp_path):
    config = tmp_path / "scorer.json"
    config.write_text(json.dumps({"weights": {"type": 2}}))
    server = start_server("--config", str(config), "--workers", "2")
    reply = httpx.post(server.url + "/score", json={"completions": [GOOD], "labels": [LABEL]})
    assert reply.json()["results"][0]["total"] == 5.0


def test_openrlhf_http_client_reaches_server(server, openrlhf_execute):
    output, _ = openrlhf_execute(server.url + "/get_reward", LABEL, GOOD + "<|im_end|>")
    assert float(output["reward"][0]) == 4.0
    assert float(output["scores"][0]) == 1.0
    assert float(output["extra_logs"]["type"][0]) == 1.0
