"""`python -m rewards.server`: the same as `iadr1-reward-server`."""

import sys

from .cli import main

sys.exit(main())
