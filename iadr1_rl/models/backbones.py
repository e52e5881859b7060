"""The published shapes of the paper's backbones (their `config.json`, trimmed to what
builds the architecture), so that a run can be planned — and a random-initialised model of
the real size built for a benchmark — before any weights are downloaded.

A model folder's own `config.json` always wins: these serve only where the folder is not
there yet (`model_config` says which was used).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

_QWEN2_VL_VISION = {"depth": 32, "embed_dim": 1280, "mlp_ratio": 4, "num_heads": 16, "patch_size": 14}
_QWEN2_5_VL_VISION = {
    "depth": 32,
    "hidden_size": 1280,
    "intermediate_size": 3420,
    "num_heads": 16,
    "patch_size": 14,
    "window_size": 112,
    "fullatt_block_indexes": [7, 15, 23, 31],
}
_CLIP_L_336 = {
    "model_type": "clip_vision_model",
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "patch_size": 14,
    "image_size": 336,
    "projection_dim": 768,
}
_SIGLIP_384 = {
    "model_type": "siglip_vision_model",
    "hidden_size": 1152,
    "intermediate_size": 4304,
    "num_hidden_layers": 26,
    "num_attention_heads": 16,
    "patch_size": 14,
    "image_size": 384,
}


def _qwen_text(
    hidden: int, intermediate: int, layers: int, heads: int, kv: int, vocab: int, tie: bool, mrope: bool = True
) -> dict:
    rope = {"rope_type": "default", "rope_theta": 1000000.0}
    return {
        "hidden_size": hidden,
        "intermediate_size": intermediate,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv,
        "vocab_size": vocab,
        "tie_word_embeddings": tie,
        "max_position_embeddings": 32768,
        "rope_parameters": {**rope, "mrope_section": [16, 24, 24]} if mrope else rope,
    }


# backbone name (the config key `backbone`) → (hub name, config.json)
BACKBONES: dict[str, tuple[str, dict[str, Any]]] = {
    "qwen2_vl_2b": (
        "Qwen/Qwen2-VL-2B-Instruct",
        {
            "model_type": "qwen2_vl",
            "text_config": _qwen_text(1536, 8960, 28, 12, 2, 151936, True),
            "vision_config": {**_QWEN2_VL_VISION, "hidden_size": 1536},
            "tie_word_embeddings": True,
        },
    ),
    "qwen2_5_vl_3b": (
        "Qwen/Qwen2.5-VL-3B-Instruct",
        {
            "model_type": "qwen2_5_vl",
            "text_config": _qwen_text(2048, 11008, 36, 16, 2, 151936, True),
            "vision_config": {**_QWEN2_5_VL_VISION, "out_hidden_size": 2048},
            "tie_word_embeddings": True,
        },
    ),
    "qwen2_5_vl_7b": (
        "Qwen/Qwen2.5-VL-7B-Instruct",
        {
            "model_type": "qwen2_5_vl",
            "text_config": _qwen_text(3584, 18944, 28, 28, 4, 152064, False),
            "vision_config": {**_QWEN2_5_VL_VISION, "out_hidden_size": 3584},
            "tie_word_embeddings": False,
        },
    ),
    "llava_ov_0_5b": (
        "llava-hf/llava-onevision-qwen2-0.5b-ov-hf",
        {
            "model_type": "llava_onevision",
            "text_config": {"model_type": "qwen2", **_qwen_text(896, 4864, 24, 14, 2, 152000, True, mrope=False)},
            "vision_config": _SIGLIP_384,
            "tie_word_embeddings": True,
        },
    ),
    "llava_ov_7b": (
        "llava-hf/llava-onevision-qwen2-7b-ov-hf",
        {
            "model_type": "llava_onevision",
            "text_config": {"model_type": "qwen2", **_qwen_text(3584, 18944, 28, 28, 4, 152128, False, mrope=False)},
            "vision_config": _SIGLIP_384,
        },
    ),
    "llava_1_5_7b": (
        "llava-hf/llava-1.5-7b-hf",
        {
            "model_type": "llava",
            "text_config": {
                "model_type": "llama",
                "hidden_size": 4096,
                "intermediate_size": 11008,
                "num_hidden_layers": 32,
                "num_attention_heads": 32,
                "num_key_value_heads": 32,
                "vocab_size": 32064,
            },
            "vision_config": _CLIP_L_336,
            "image_token_index": 32000,
        },
    ),
    "llava_1_6_8b": (
        "llava-hf/llama3-llava-next-8b-hf",
        {
            "model_type": "llava_next",
            "text_config": {
                "model_type": "llama",
                "hidden_size": 4096,
                "intermediate_size": 14336,
                "num_hidden_layers": 32,
                "num_attention_heads": 32,
                "num_key_value_heads": 8,
                "vocab_size": 128320,
            },
            "vision_config": _CLIP_L_336,
            "image_token_index": 128256,
        },
    ),
}


def model_config(path: str | Path, backbone: str | None = None):
    """(transformers config, where it came from): the folder's `config.json` when there is
    one, else the published shape of `backbone`; a clear error when neither exists."""
    from transformers import AutoConfig

    config_file = Path(path) / "config.json"
    if config_file.is_file():
        return AutoConfig.from_pretrained(str(path)), str(config_file)
    if backbone in BACKBONES:
        hub, data = BACKBONES[backbone]
        data = json.loads(json.dumps(data))  # a copy: from_dict may change it
        return AutoConfig.for_model(data.pop("model_type"), **data), f"the published config of {hub}"
    known = ", ".join(BACKBONES)
    raise FileNotFoundError(
        f"no config.json in {path} and backbone {backbone!r} is not one whose shape is shipped ({known}): "
        "put the model's config.json there (the weights are not needed to plan)"
    )
