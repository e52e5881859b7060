"""`rewards/integrations/openrlhf.py` reached through OpenRLHF's own reward path.

OpenRLHF (installed --no-deps) loads our file by path in `SingleTurnAgentExecutor`,
tokenises the VLM prompt with a real Qwen2-VL processor (expanding the image pads),
decodes prompt + response with special tokens and calls `reward_func`. Only the vLLM
engine is stood in for: it returns the token ids of a fixed response.
"""

import json
from pathlib import Path

import pytest

from rewards import Scorer

ROOT = Path(__file__).resolve().parent.parent
REWARD_FILE = ROOT / "rewards" / "integrations" / "openrlhf.py"
EARLIER_PATH = ROOT / "rewards" / "openrlhf_reward.py"  # in users' command lines: must keep working
RESPONSE = "<think>a dark hole</think><location>top left</location><type>holes</type><answer>yes</answer>"
LABEL = {"answer": "yes", "location": "upper left", "type": "hole"}


@pytest.mark.parametrize("label", [LABEL, json.dumps(LABEL)], ids=["dict", "json"])
def test_reward_through_openrlhf_executor(openrlhf_execute, tiny_processor, label):
    output, engine = openrlhf_execute(str(REWARD_FILE), label, RESPONSE + "<|im_end|>")
    # The processor expanded the image pad: naive slicing of the query would be wrong.
    pad = tiny_processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert engine.seen_prompt_ids.count(pad) == 16
    expected = Scorer().score(RESPONSE, LABEL)
    assert float(output["reward"][0]) == pytest.approx(expected.total) == pytest.approx(4.0)
    assert float(output["scores"][0]) == pytest.approx(1.0)
    assert set(output["extra_logs"]) == {"consistency", "accuracy", "location", "type"}
    assert float(output["extra_logs"]["type"][0]) == pytest.approx(1.0)


def test_the_earlier_path_forwards_through_openrlhf_executor(openrlhf_execute):
    for label, response, reward in ((LABEL, RESPONSE, 4.0), ({"answer": "no"}, RESPONSE, 0.0)):
        output, _ = openrlhf_execute(str(EARLIER_PATH), label, response + "<|im_end|>")
        assert float(output["reward"][0]) == reward
        assert float(output["reward"][0]) == float(openrlhf_execute(str(REWARD_FILE), label, response)[0]["reward"][0])


def test_wrong_answer_through_openrlhf_executor(openrlhf_execute):
    response = "<think>clean</think><answer>no</answer><|im_end|>"
    output, _ = openrlhf_execute(str(REWARD_FILE), LABEL, response)
    assert float(output["reward"][0]) == 0.0


def test_reward_func_direct_and_built_once(monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("reward_file_under_test", REWARD_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    prompt = "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Q<|im_end|>\n<|im_start|>assistant\n"
    query = prompt.replace("<|image_pad|>", "<|image_pad|>" * 9) + RESPONSE + "<|im_end|>"
    result = module.reward_func([query, query], [prompt, prompt], [LABEL, {"answer": "no"}])
    assert result["rewards"].tolist() == [4.0, 0.0]
    assert result["scores"].tolist() == [1.0, 0.0]
    first = module.get_scorer()
    module.reward_func([query], [prompt], [LABEL])
    assert module.get_scorer() is first
    with pytest.raises(ValueError, match="lengths differ"):
        module.reward_func([query], [], [LABEL])


def test_scorer_config_from_environment(monkeypatch, tmp_path):
    import importlib.util

    config = tmp_path / "scorer.json"
    config.write_text(json.dumps({"weights": {"type": 3}}))
    monkeypatch.setenv("IADR1_SCORER_CONFIG", str(config))
    spec = importlib.util.spec_from_file_location("reward_file_with_config", REWARD_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.reward_func([RESPONSE], [""], [LABEL])
    assert result["rewards"].tolist() == [6.0]


def load_reward_file(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REWARD_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_forwarding_to_a_token_protected_server(start_server, monkeypatch, tmp_path, openrlhf_execute):
    """OpenRLHF's own HTTP client sends no headers; the reward file carries the token."""
    server = start_server(env={"IADR1_REWARD_TOKEN": "s3cret"})
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    monkeypatch.setenv("IADR1_REWARD_URL", server.url + "/get_reward")
    monkeypatch.setenv("IADR1_REWARD_TOKEN_FILE", str(token))
    monkeypatch.delenv("IADR1_REWARD_TOKEN", raising=False)
    module = load_reward_file("reward_file_forwarding")
    prompt = "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Q<|im_end|>\n<|im_start|>assistant\n"
    query = prompt.replace("<|image_pad|>", "<|image_pad|>" * 9) + RESPONSE + "<|im_end|>"
    result = module.reward_func([query, query], [prompt, prompt], [LABEL, {"answer": "no"}])
    assert result["rewards"].tolist() == [4.0, 0.0]
    assert "iadr1_reward_completions_scored_total 2.0" in __import__("httpx").get(server.url + "/metrics").text
    output, _ = openrlhf_execute(str(REWARD_FILE), LABEL, RESPONSE + "<|im_end|>")  # through OpenRLHF's executor
    assert float(output["reward"][0]) == 4.0


@pytest.mark.parametrize(
    ("server_args", "environment", "words"),
    [
        ((), {"IADR1_REWARD_TOKEN": "wrong"}, "HTTP 401: missing or wrong bearer token"),
        (("--config", "SCORER"), {"IADR1_REWARD_TOKEN": "s3cret"}, "start the server with --config"),
        (None, {}, "did not answer"),
    ],
    ids=["wrong token", "another scorer", "no server"],
)
def test_forwarding_fails_loudly(start_server, monkeypatch, tmp_path, server_args, environment, words):
    from rewards.remote import RemoteRewardError

    scorer = tmp_path / "scorer.json"
    scorer.write_text(json.dumps({"weights": {"type": 2}}))
    if server_args is None:
        url = "http://127.0.0.1:9/get_reward"
    else:
        args = [str(scorer) if a == "SCORER" else a for a in server_args]
        url = start_server(*args, env={"IADR1_REWARD_TOKEN": "s3cret"}).url + "/get_reward"
    monkeypatch.setenv("IADR1_REWARD_URL", url)
    monkeypatch.setenv("IADR1_REWARD_ATTEMPTS", "1")
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    module = load_reward_file("reward_file_failing")
    with pytest.raises(RemoteRewardError, match=words):
        module.reward_func([RESPONSE], [""], [LABEL])  # never a silent default reward
