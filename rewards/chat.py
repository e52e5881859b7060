"""Cut the policy's completion out of what a trainer sends the reward function.

OpenRLHF sends `query` = prompt + response, decoded *with* special tokens, and the
`prompt` as it stood in the dataset. For VLMs the processor expanded every image
placeholder in the query into hundreds of pad tokens (and SentencePiece decoding may
reshape spaces around special tokens), so `query[len(prompt):]` is wrong. We find the
start of the response in three ways, most exact first:

1. the query starts with the prompt (text-only models): cut after it;
2. the prompt ends with a known assistant header (Qwen2/2.5-VL and LLaVA-OneVision
   ChatML, LLaVA-1.5/1.6-Vicuna `ASSISTANT:`, LLaVA-1.6-Mistral `[/INST]`, LLaVA-NeXT
   Llama-3 header): it stands k times in the prompt, so the response starts after its
   k-th occurrence in the query; text the policy wrote later cannot move that point;
3. the prompt text after its last image placeholder found in the query.

Then the completion is cut at the first end-of-turn token.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

ASSISTANT_HEADERS = (
    "<|im_start|>assistant",  # ChatML: Qwen2-VL, Qwen2.5-VL, LLaVA-OneVision
    "<|start_header_id|>assistant<|end_header_id|>",  # Llama 3: LLaVA-NeXT 8B
    "ASSISTANT:",  # Vicuna: LLaVA-1.5, LLaVA-1.6-Vicuna
    "[/INST]",  # Mistral: LLaVA-1.6-Mistral
    "<|assistant|>",  # Phi-3 style
    "<start_of_turn>model",  # Gemma
)

END_OF_TURN_TOKENS = (
    "<|im_end|>",
    "<|endoftext|>",
    "<|eot_id|>",
    "<|end_of_text|>",
    "<end_of_turn>",
    "<|end|>",
    "</s>",
)

IMAGE_PLACEHOLDERS = (
    "<|image_pad|>",
    "<|video_pad|>",
    "<|vision_end|>",
    "<image>",
    "<video>",
)


def strip_end_of_turn(text: str) -> str:
    """Drop the first end-of-turn token and everything after it (padding, a new turn).

    >>> strip_end_of_turn("<answer>no</answer><|im_end|><|endoftext|>")
    '<answer>no</answer>'
    """
    cut = len(text)
    for token in END_OF_TURN_TOKENS:
        index = text.find(token, 0, cut)
        if index != -1:
            cut = index
    return text[:cut]


def _after_kth(text: str, needle: str, k: int) -> int | None:
    """Index just after the k-th occurrence of `needle` in `text`, or None."""
    position = 0
    for _ in range(k):
        index = text.find(needle, position)
        if index == -1:
            return None
        position = index + len(needle)
    return position


def response_start(query: str, prompt: str) -> int:
    """Where the response begins inside `query` (0 when nothing can be found)."""
    if not prompt or query.startswith(prompt):
        return len(prompt)
    tail = prompt.rstrip()
    for header in ASSISTANT_HEADERS:
        if tail.endswith(header):
            position = _after_kth(query, header, prompt.count(header))
            if position is not None:
                return position
    last_placeholder = max(((prompt.rfind(p) + len(p)) for p in IMAGE_PLACEHOLDERS if p in prompt), default=0)
    remainder = prompt[last_placeholder:].strip()
    if remainder:
        index = query.find(remainder)
        if index != -1:
            return index + len(remainder)
    logger.warning("could not locate the prompt inside the query; scoring the whole query")
    return 0


def extract_completion(query: str, prompt: str = "") -> str:
    """The policy's completion, cut out of a trainer's query and stripped of end tokens.

    >>> prompt = ("<|im_start|>user\\n<|vision_start|><|image_pad|><|vision_end|>Any defects?<|im_end|>\\n"
    ...           "<|im_start|>assistant\\n")
    >>> query = prompt.replace("<|image_pad|>", "<|image_pad|>" * 4) + "<answer>no</answer><|im_end|>"
    >>> extract_completion(query, prompt)
    '<answer>no</answer>'
    """
    return strip_end_of_turn(query[response_start(query, prompt or "") :]).strip()
