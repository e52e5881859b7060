"""PA-SFT: supervised fine-tuning on the records' chain-of-thought responses.

python recipes/pa_sft.py --config recipes/configs/demo.yaml [key=value …] [--resume]
python recipes/pa_sft.py --config recipes/configs/qwen2_vl_2b.yaml --dry-run   # each rank's memory plan
ray job submit --working-dir . -- python recipes/pa_sft.py --config … --root "$PWD"
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout, in a Ray job too

from iadr1_rl.backends.local.sft import run_sft
from iadr1_rl.backends.recipe_cli import parse_recipe_args, recipe_parser, run_recipe


def build_parser():
    return recipe_parser(__doc__.split("\n")[1])


def main(argv: list[str] | None = None) -> int:
    args, config = parse_recipe_args(build_parser(), argv)
    return run_recipe(run_sft, args, config, "pa_sft")


if __name__ == "__main__":
    sys.exit(main())
