"""Shared fixtures. The repository root goes first on sys.path so that our packages
(not OpenRLHF's top-level `tests`) are what the tests import."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SHARED = ROOT.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"../shared not found beside the checkout (expected {SHARED})")
    return SHARED


@pytest.fixture(scope="session")
def tiny_processor(tmp_path_factory):
    """A real Qwen2-VL processor (locally trained tokenizer, PIL image processor)."""
    from iadr1_rl.models.tiny import TAG_TOKENS, build_processor, train_tokenizer

    corpus = [
        "<think>The surface shows a dark hole near the top left corner.</think>",
        "<location>top left</location><type>hole</type><answer>yes</answer>",
        "<think>Uniform texture without any defect.</think><answer>no</answer>",
        "Are there any defects in the test image?",
    ] * 20 + TAG_TOKENS
    return build_processor(train_tokenizer(corpus, vocab_size=400))
