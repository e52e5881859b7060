"""The paper's prompts (Table 8), applied through each model's own chat template.

`{image}` marks where an image goes. `build_messages` turns a prompt into chat
messages with image items, which the model's processor renders with its own
placeholders (`<|vision_start|><|image_pad|><|vision_end|>` for Qwen2-VL, `<image>`
for LLaVA).
"""

from __future__ import annotations

from typing import Any

QUESTION = "Are there any defects in the test image?"
ONE_SHOT_PREFIX = (
    "Following is 1 image of normal sample, which can be used as a template to compare the image being queried. "
    "{image} Following is image of test sample: {image} "
)

PROMPTS: dict[str, str] = {
    # SC-GRPO (and GRPO) training: the question follows the expert instruction.
    "train": (
        "{image}You are an expert in detecting defects in image. "
        "Your task is to detect if there are any defects in the test image.\n{question}"
    ),
    "train_1shot": (
        "You are an expert in detecting defects in image. "
        "Your task is to detect if there are any defects in the test image.\n" + ONE_SHOT_PREFIX + "{question}"
    ),
    # IAD-R1 models at test time.
    "iad_r1": "{image}{question}",
    "iad_r1_1shot": ONE_SHOT_PREFIX + "{question}",
    # Base models at test time: a plain yes/no.
    "base": "{image}Are there any defects in the query image? Please answer by yes or no.",
    "base_1shot": ONE_SHOT_PREFIX + "Are there any defects in the test image? Please answer by yes or no.",
    # A base model used directly as the initial policy must be told the format.
    "base_initial_policy": (
        "{image}You are an expert in detecting anomalies in image. Your task is to detect if there are any "
        "anomalies in the test image. If you find anomalies in the test image, structure your response with the "
        "following format: <think>[Your process of observation and reasoning is here]</think><location>[The "
        "location of the anomaly in the image]</location><type>[The type of anomaly in the image]</type><answer>"
        "[Your final answer is here(yes or no)]</answer> If no anomalies are detected in the test image, structure "
        "your response with the following format: <think>[Your process of observation and reasoning is here]"
        "</think><answer>[Your final answer is here(yes or no)]</answer>"
    ),
}
PROMPT_FAMILIES = ("train", "iad_r1", "base", "base_initial_policy")


def prompt_text(family: str, shots: int, question: str = QUESTION) -> str:
    """The prompt of a family for 0 or 1 shot, with `{image}` placeholders left in.

    >>> prompt_text("iad_r1", 0)
    '{image}Are there any defects in the test image?'
    >>> prompt_text("iad_r1", 1).count("{image}")
    2
    """
    if family not in PROMPT_FAMILIES:
        raise ValueError(f"unknown prompt family {family!r}; expected one of {', '.join(PROMPT_FAMILIES)}")
    if shots not in (0, 1):
        raise ValueError(f"shots must be 0 or 1, got {shots}")
    key = family if shots == 0 else f"{family}_1shot"
    if key not in PROMPTS:
        raise ValueError(f"the {family!r} prompt has no 1-shot form")
    return PROMPTS[key].replace("{question}", question)


def build_messages(text: str, response: str | None = None) -> list[dict[str, Any]]:
    """Chat messages for a prompt with `{image}` marks (and an optional assistant turn).

    >>> build_messages("{image}Any defects?")[0]["content"]
    [{'type': 'image'}, {'type': 'text', 'text': 'Any defects?'}]
    """
    content: list[dict[str, Any]] = []
    for index, piece in enumerate(text.split("{image}")):
        if index:
            content.append({"type": "image"})
        if piece:
            content.append({"type": "text", "text": piece})
    messages: list[dict[str, Any]] = [{"role": "user", "content": content}]
    if response is not None:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": response}]})
    return messages


def render_prompt(processor, family: str, shots: int, question: str = QUESTION) -> str:
    """The prompt as the model sees it: its chat template with a generation prompt."""
    messages = build_messages(prompt_text(family, shots, question))
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
