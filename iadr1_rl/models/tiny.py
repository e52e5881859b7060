"""A tiny random-initialised Qwen2-VL with a locally trained BPE tokenizer.

Nothing can be downloaded here, so the CPU default builds its own model: the real
Qwen2-VL architecture at toy size, a ByteLevel BPE tokenizer trained on the project's
own corpus, and a Qwen2-VL processor (PIL image processor: no torchvision), all saved
as an ordinary HF folder. The loading code that reads it serves real checkpoints too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
# The output tags are single tokens: the format is learned in seconds and a tag can
# never be split across a sampling boundary. They are not special, so decoding with
# skip_special_tokens keeps them.
TAG_TOKENS = ["<think>", "</think>", "<location>", "</location>", "<type>", "</type>", "<answer>", "</answer>"]

# ChatML with Qwen2-VL's image items, without the default system prompt.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@dataclass(frozen=True)
class TinyModelSpec:
    """Sizes of the tiny model (defaults measured to learn synthetic defects on CPU)."""

    vocab_size: int = 512
    hidden_size: int = 192
    num_layers: int = 3
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 512
    vision_depth: int = 3
    vision_embed_dim: int = 96
    vision_heads: int = 4
    vision_mlp_ratio: int = 3
    patch_size: int = 14
    merge_size: int = 2
    image_size: int = 112
    max_positions: int = 1024
    # M-RoPE gives the image's rows and columns the lowest rotary frequencies: with head
    # dim 48 and θ 10 000 neighbouring columns differ by < 0.004 rad, so the language model
    # cannot tell where a defect lies. θ 10 makes them distinguishable (measured, 900
    # PA-SFT steps: location 0.59 → 0.76; θ 100: 0.30).
    rope_theta: float = 10.0
    seed: int = 0


def train_tokenizer(corpus: Iterable[str], vocab_size: int = 512):
    """A ByteLevel BPE `PreTrainedTokenizerFast` trained on `corpus`, Qwen2-VL tokens added."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:],
    )
    fast.add_tokens(TAG_TOKENS)
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_processor(tokenizer, spec: TinyModelSpec = TinyModelSpec()):
    """A Qwen2-VL processor around `tokenizer`; images keep their size (multiples of 28)."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from .processor import ImageOnlyQwen2VLProcessor

    pixels = spec.image_size * spec.image_size
    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=pixels // 4,
        max_pixels=pixels,
        patch_size=spec.patch_size,
        merge_size=spec.merge_size,
        temporal_patch_size=2,
    )
    return ImageOnlyQwen2VLProcessor(image_processor, tokenizer, chat_template=CHAT_TEMPLATE)


def build_model(tokenizer, spec: TinyModelSpec = TinyModelSpec()):
    """A random-initialised `Qwen2VLForConditionalGeneration` sized by `spec`."""
    import torch
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    head_dim = spec.hidden_size // spec.num_heads
    # M-RoPE splits half the head dimension over (time, height, width).
    third = head_dim // 2 // 4
    mrope_section = [head_dim // 2 - 2 * (third + third // 2), third + third // 2, third + third // 2]
    ids = tokenizer.convert_tokens_to_ids
    config = Qwen2VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": spec.hidden_size,
            "intermediate_size": spec.intermediate_size,
            "num_hidden_layers": spec.num_layers,
            "num_attention_heads": spec.num_heads,
            "num_key_value_heads": spec.num_kv_heads,
            "max_position_embeddings": spec.max_positions,
            "rope_parameters": {"rope_type": "default", "rope_theta": spec.rope_theta, "mrope_section": mrope_section},
            "bos_token_id": ids("<|endoftext|>"),
            "eos_token_id": ids("<|im_end|>"),
            "pad_token_id": ids("<|endoftext|>"),
            "tie_word_embeddings": True,
        },
        vision_config={
            "depth": spec.vision_depth,
            "embed_dim": spec.vision_embed_dim,
            "hidden_size": spec.hidden_size,
            "num_heads": spec.vision_heads,
            "mlp_ratio": spec.vision_mlp_ratio,
            "patch_size": spec.patch_size,
            "spatial_merge_size": spec.merge_size,
            "temporal_patch_size": 2,
        },
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=True,
    )
    torch.manual_seed(spec.seed)
    model = Qwen2VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = ids("<|im_end|>")
    model.generation_config.pad_token_id = ids("<|endoftext|>")
    return model


def build_tiny_vlm(corpus: Iterable[str], out_dir: str | Path, spec: TinyModelSpec = TinyModelSpec()) -> Path:
    """Train the tokenizer, build processor and model, save all as one HF folder."""
    import json

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(corpus, spec.vocab_size)
    processor = build_processor(tokenizer, spec)
    model = build_model(tokenizer, spec)
    from .processor import save_processor

    model.save_pretrained(out_dir)
    save_processor(processor, out_dir)
    (out_dir / "tiny_spec.json").write_text(json.dumps(asdict(spec), indent=2))
    params = sum(p.numel() for p in model.parameters())
    logger.info("built tiny Qwen2-VL (%.2f M parameters, vocab %d) in %s", params / 1e6, len(tokenizer), out_dir)
    return out_dir


def build_shaped_vlm(
    corpus: Iterable[str], out_dir: str | Path, backbone_config: dict, image_size: int = 448, dtype: str = "bfloat16"
) -> Path:
    """A random-initialised Qwen2-VL or Qwen2.5-VL with a backbone's real shapes (its
    vocabulary size included) and the local tokenizer, saved as an HF folder: what a
    benchmark runs at the real size with nothing downloaded. `backbone_config` is a
    `backbones.BACKBONES` config (or any of those families' config.json as a dict)."""
    import copy
    import json

    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    from .processor import save_processor

    data = copy.deepcopy(backbone_config)
    family = data.pop("model_type")
    if family not in ("qwen2_vl", "qwen2_5_vl"):
        raise ValueError(f"shaped models are built for the Qwen2-VL families, not {family!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(corpus, 512)
    vocab = data["text_config"]["vocab_size"]
    if len(tokenizer) > vocab:
        raise ValueError(f"the local tokenizer has {len(tokenizer)} tokens, more than the model's {vocab}")
    ids = tokenizer.convert_tokens_to_ids
    special = {  # the local tokenizer's ids for the placeholders (the vocabulary keeps its real size)
        "image_token_id": ids("<|image_pad|>"),
        "video_token_id": ids("<|video_pad|>"),
        "vision_start_token_id": ids("<|vision_start|>"),
        "vision_end_token_id": ids("<|vision_end|>"),
    }
    data["text_config"].update(
        bos_token_id=ids("<|endoftext|>"), eos_token_id=ids("<|im_end|>"), pad_token_id=ids("<|endoftext|>")
    )
    config = AutoConfig.for_model(family, **data, **special)
    torch.manual_seed(0)
    model = AutoModelForImageTextToText.from_config(config, dtype=getattr(torch, dtype))
    model.generation_config.eos_token_id = ids("<|im_end|>")
    model.generation_config.pad_token_id = ids("<|endoftext|>")
    spec = TinyModelSpec(image_size=image_size, patch_size=config.vision_config.patch_size)
    model.save_pretrained(out_dir)
    save_processor(build_processor(tokenizer, spec), out_dir)
    (out_dir / "shape.json").write_text(json.dumps({"model_type": family, **data}, indent=2))
    logger.info("built a %.2f B-parameter %s in %s", sum(p.numel() for p in model.parameters()) / 1e9, family, out_dir)
    return out_dir
