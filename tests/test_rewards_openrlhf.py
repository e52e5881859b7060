"""`rewards/openrlhf_reward.py` reached through OpenRLHF's own reward path.

OpenRLHF (installed --no-deps) loads our file by path in `SingleTurnAgentExecutor`,
tokenises the VLM prompt with a real Qwen2-VL processor (expanding the image pads),
decodes prompt + response with special tokens and calls `reward_func`. Only the vLLM
engine is stood in for: it returns the token ids of a fixed response.
"""

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from rewards import Scorer

REWARD_FILE = Path(__file__).resolve().parent.parent / "rewards" / "openrlhf_reward.py"
RESPONSE = "<think>a dark hole</think><location>top left</location><type>holes</type><answer>yes</answer>"
LABEL = {"answer": "yes", "location": "upper left", "type": "hole"}


class FixedResponseEngine:
    """Stands in for a vLLM engine: answers every prompt with the same tokens."""

    def __init__(self, tokenizer, text):
        self.token_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        self.text = text
        self.seen_prompt_ids = None

    async def generate(self, prompt_token_ids, sampling_params, multi_modal_data=None):
        self.seen_prompt_ids = prompt_token_ids
        output = SimpleNamespace(token_ids=self.token_ids, text=self.text, finish_reason="stop", logprobs=None)
        return SimpleNamespace(outputs=[output])


def run_executor(processor, prompt, label, response):
    from openrlhf.utils.agent import SingleTurnAgentExecutor

    executor = SingleTurnAgentExecutor(remote_rm_url=str(REWARD_FILE))
    engine = FixedResponseEngine(processor.tokenizer, response)
    params = SimpleNamespace(max_tokens=64, logprobs=None)
    image = Image.new("RGB", (112, 112), (120, 110, 100))
    output = asyncio.run(executor.execute(prompt, label, params, 512, processor, engine, images=[image]))
    return output, engine


def vlm_prompt(processor):
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Are there any defects?"}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


@pytest.mark.parametrize("label", [LABEL, json.dumps(LABEL)], ids=["dict", "json"])
def test_reward_through_openrlhf_executor(tiny_processor, label):
    prompt = vlm_prompt(tiny_processor)
    output, engine = run_executor(tiny_processor, prompt, label, RESPONSE + "<|im_end|>")
    # The processor expanded the image pad: naive slicing of the query would be wrong.
    pad = tiny_processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert engine.seen_prompt_ids.count(pad) == 16
    expected = Scorer().score(RESPONSE, LABEL)
    assert float(output["reward"][0]) == pytest.approx(expected.total) == pytest.approx(4.0)
    assert float(output["scores"][0]) == pytest.approx(1.0)
    assert set(output["extra_logs"]) == {"consistency", "accuracy", "location", "type"}
    assert float(output["extra_logs"]["type"][0]) == pytest.approx(1.0)


def test_wrong_answer_through_openrlhf_executor(tiny_processor):
    response = "<think>clean</think><answer>no</answer><|im_end|>"
    output, _ = run_executor(tiny_processor, vlm_prompt(tiny_processor), LABEL, response)
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
    with pytest.raises(ValueError, match="differ in length"):
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
