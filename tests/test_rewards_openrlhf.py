"""`rewards/openrlhf_reward.py` reached through OpenRLHF's own reward path.

OpenRLHF (installed --no-deps) loads our file by path in `SingleTurnAgentExecutor`,
tokenises the VLM prompt with a real Qwen2-VL processor (expanding the image pads),
decodes prompt + response with special tokens and calls `reward_func`. Only the vLLM
engine is stood in for: it returns the token ids of a fixed response.
"""

import json
from pathlib import Path

import pytest

from rewards import Scorer

REWARD_FILE = Path(__file__).resolve().parent.parent / "rewards" / "openrlhf_reward.py"
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
