"""SC-GRPO: group-relative policy optimisation with the four-part IAD-R1 reward.

python recipes/sc_grpo.py --config recipes/configs/demo.yaml [key=value …] [--resume]
python recipes/sc_grpo.py --config recipes/configs/qwen2_vl_2b.yaml --dry-run   # each actor's memory plan
ray job submit --working-dir . -- python recipes/sc_grpo.py --config … --root "$PWD"
python recipes/sc_grpo.py --config recipes/configs/qwen2_5_vl_3b.yaml --backend openrlhf [--dry-run]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout, in a Ray job too

from iadr1_rl.backends.local.grpo import run_grpo
from iadr1_rl.backends.recipe_cli import parse_recipe_args, recipe_parser, run_recipe


def build_parser():
    parser = recipe_parser(__doc__.split("\n")[1])
    parser.add_argument(
        "--backend", choices=("local", "openrlhf"), help="overrides resources.backend (default: the config's)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, config = parse_recipe_args(parser, argv)
    backend = args.backend or config.resources.backend
    if backend == "openrlhf":
        from iadr1_rl.backends import openrlhf

        return openrlhf.run(config, dry_run=args.dry_run)
    return run_recipe(run_grpo, args, config, "sc_grpo")


if __name__ == "__main__":
    sys.exit(main())
