"""Read the policy's completion out of what a trainer sends the reward function.

`completion_text` reads a completion in any form a trainer passes one: text, bytes, None,
or chat messages (TRL's conversational completions).

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
from collections.abc import Mapping, Sequence
from typing import Any

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


def completion_text(completion: Any) -> str:
    """The text of a completion: text as is, bytes decoded (UTF-8, bad bytes replaced), None
    as the empty text, and a list of chat messages as its last assistant message (a content
    given as a list of parts: its text parts joined). Anything else is a caller error.

    >>> completion_text([{"role": "assistant", "content": "<answer>no</answer>"}])
    '<answer>no</answer>'
    >>> parts = [{"type": "text", "text": "a"}, {"type": "image"}, {"type": "text", "text": "b"}]
    >>> completion_text([{"role": "user", "content": "?"}, {"role": "assistant", "content": parts}])
    'ab'
    >>> completion_text(42)
    Traceback (most recent call last):
    TypeError: completion: expected text, bytes, None or a list of chat messages, got int
    """
    if isinstance(completion, str):
        return completion
    if completion is None:
        return ""
    if isinstance(completion, (bytes, bytearray)):
        return bytes(completion).decode("utf-8", errors="replace")
    if isinstance(completion, Sequence):
        return _assistant_text(completion)
    raise TypeError(
        f"completion: expected text, bytes, None or a list of chat messages, got {type(completion).__name__}"
    )


def _assistant_text(messages: Sequence[Any]) -> str:
    for message in messages:
        if not isinstance(message, Mapping) or "role" not in message:
            raise TypeError(
                f"completion: a list must hold chat messages ({{'role', 'content'}}), got a {type(message).__name__}"
            )
    replies = [m for m in messages if m["role"] == "assistant"]
    if not replies:
        raise TypeError("completion: the chat messages hold no assistant message")
    content = replies[-1].get("content")
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, Sequence):
        return "".join(_part_text(part) for part in content)
    raise TypeError(f"completion: an assistant content must be text or a list of parts, got {type(content).__name__}")


def _part_text(part: Any) -> str:
    if isinstance(part, str):
        return part
    if isinstance(part, Mapping):
        text = part.get("text") if part.get("type", "text") == "text" else None
        return text if isinstance(text, str) else ""
    raise TypeError(f"completion: a content part must be a mapping or text, got {type(part).__name__}")
