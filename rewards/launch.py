"""Console-script entry points that explain a missing extra in one line.

`pip install iadr1-rl` installs the scorer only, yet every command's script; a command
whose extra is missing says which one to install instead of a traceback:

    error: iadr1-reward-server needs the "server" extra (no module named 'fastapi'): pip install "iadr1-rl[server]"
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

# The top-level module → the extra of setup.py that installs it.
EXTRA_OF = {
    **dict.fromkeys(("fastapi", "uvicorn", "h11", "starlette", "pydantic", "prometheus_client"), "server"),
    **dict.fromkeys(("numpy", "PIL", "yaml", "tqdm", "matplotlib"), "data"),
    **dict.fromkeys(("torch", "transformers", "tokenizers", "safetensors", "ray", "tensorboard"), "train"),
    **dict.fromkeys(("datasets", "pyarrow"), "openrlhf-cpu"),
    **dict.fromkeys(("trl", "accelerate"), "trl"),
    "deepspeed": "deepspeed",
}


def missing_extra_message(prog: str, error: ModuleNotFoundError) -> str | None:
    """The one-line advice for `error`, or None when no extra installs the module."""
    top = (error.name or "").split(".")[0]
    extra = EXTRA_OF.get(top)
    if extra is None:
        return None
    return f'error: {prog} needs the "{extra}" extra (no module named {top!r}): pip install "iadr1-rl[{extra}]"'


def run_entry_point(target: str, prog: str) -> int:
    """Import `module:function` and run it; a missing extra is one line and exit 2."""
    module, _, function = target.partition(":")
    try:
        main: Callable[[], int] = getattr(importlib.import_module(module), function)
        return main()
    except ModuleNotFoundError as error:
        message = missing_extra_message(prog, error)
        if message is None:
            raise
        print(message, file=sys.stderr)
        return 2


def reward_server() -> int:
    return run_entry_point("rewards.server.cli:main", "iadr1-reward-server")
