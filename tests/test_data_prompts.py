"""The paper's prompts through a real chat template."""

import pytest

from iadr1_rl.data.prompts import PROMPT_FAMILIES, build_messages, prompt_text, render_prompt


@pytest.mark.parametrize("family", PROMPT_FAMILIES)
def test_zero_shot_prompts_have_one_image(family):
    assert prompt_text(family, 0).count("{image}") == 1


def test_one_shot_prompts_put_the_reference_first():
    text = prompt_text("iad_r1", 1)
    assert text.startswith("Following is 1 image of normal sample")
    assert text.index("{image}") < text.index("Following is image of test sample") < text.rindex("{image}")
    with pytest.raises(ValueError, match="no 1-shot form"):
        prompt_text("base_initial_policy", 1)
    with pytest.raises(ValueError, match="unknown prompt family"):
        prompt_text("nope", 0)


def test_rendered_through_the_processor(tiny_processor):
    zero = render_prompt(tiny_processor, "train", 0)
    assert zero.count("<|image_pad|>") == 1 and "You are an expert in detecting defects" in zero
    one = render_prompt(tiny_processor, "iad_r1", 1)
    assert one.count("<|image_pad|>") == 2 and one.endswith("<|im_start|>assistant\n")


def test_messages_with_response():
    messages = build_messages("{image}Q", "<answer>no</answer>")
    assert messages[1] == {"role": "assistant", "content": [{"type": "text", "text": "<answer>no</answer>"}]}
