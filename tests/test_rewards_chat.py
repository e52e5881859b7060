"""Cutting the completion out of trainer queries for each backbone's chat template."""

import pytest

from rewards.chat import extract_completion, strip_end_of_turn

RESPONSE = "<think>a hole</think><location>top</location><type>hole</type><answer>yes</answer>"

QWEN_PROMPT = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    "<|vision_start|><|image_pad|><|vision_end|>Are there any defects in the test image?<|im_end|>\n"
    "<|im_start|>assistant\n"
)
ONEVISION_PROMPT = "<|im_start|>user <image>\nAre there any defects in the test image?<|im_end|><|im_start|>assistant\n"
LLAVA15_PROMPT = "USER: <image>\nAre there any defects in the test image? ASSISTANT:"
LLAVA16_MISTRAL_PROMPT = "[INST] <image>\nAre there any defects in the test image? [/INST]"
LLAVA_NEXT_LLAMA3_PROMPT = (
    "<|start_header_id|>user<|end_header_id|>\n\n<image>\nAre there any defects in the test image?<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n"
)


def expand(prompt: str, n: int = 64) -> str:
    """What the processor does to the prompt inside the query: one pad becomes n."""
    return prompt.replace("<|image_pad|>", "<|image_pad|>" * n).replace("<image>", "<image>" * n)


CASES = [
    # (prompt, query, expected completion)
    (QWEN_PROMPT, expand(QWEN_PROMPT) + RESPONSE + "<|im_end|>", RESPONSE),  # Qwen2/2.5-VL
    (QWEN_PROMPT, expand(QWEN_PROMPT) + RESPONSE + "<|im_end|><|endoftext|><|endoftext|>", RESPONSE),  # padding
    (ONEVISION_PROMPT, expand(ONEVISION_PROMPT) + RESPONSE + "<|im_end|>", RESPONSE),  # LLaVA-OneVision
    (
        LLAVA15_PROMPT,
        "<s> " + expand(LLAVA15_PROMPT).replace("<image>\n", "<image> \n") + " " + RESPONSE + "</s>",
        RESPONSE,
    ),  # LLaVA-1.5: BOS and SentencePiece spaces in the decoded query
    (LLAVA16_MISTRAL_PROMPT, "<s>" + expand(LLAVA16_MISTRAL_PROMPT) + RESPONSE + "</s>", RESPONSE),
    (LLAVA_NEXT_LLAMA3_PROMPT, expand(LLAVA_NEXT_LLAMA3_PROMPT) + RESPONSE + "<|eot_id|>", RESPONSE),
    ("plain text prompt: ", "plain text prompt: " + RESPONSE, RESPONSE),  # text-only: prefix cut
    # The policy writes an assistant header itself: the cut stays where the prompt ended.
    (
        QWEN_PROMPT,
        expand(QWEN_PROMPT) + "junk<|im_start|>assistant\n" + RESPONSE,
        "junk<|im_start|>assistant\n" + RESPONSE,
    ),
    (QWEN_PROMPT, expand(QWEN_PROMPT) + "<|im_end|>", ""),  # empty response
]


@pytest.mark.parametrize(("prompt", "query", "expected"), CASES)
def test_extract_completion(prompt, query, expected):
    assert extract_completion(query, prompt) == expected


def test_naive_slicing_would_be_wrong():
    query = expand(QWEN_PROMPT) + RESPONSE
    assert query[len(QWEN_PROMPT) :] != RESPONSE
    assert extract_completion(query, QWEN_PROMPT) == RESPONSE


def test_unknown_template_falls_back_to_text_after_last_image():
    prompt = "<<SYS>> look <image> Are there defects? >>>"
    query = prompt.replace("<image>", "<image>" * 5).replace("<<SYS>>", "<bos><<SYS>>") + RESPONSE
    assert extract_completion(query, prompt) == RESPONSE


def test_nothing_found_scores_the_whole_query():
    assert extract_completion(RESPONSE, "a prompt that is not there") == RESPONSE


def test_strip_end_of_turn():
    assert strip_end_of_turn("a</s>b<|im_end|>") == "a"
    assert strip_end_of_turn("no end token") == "no end token"
