"""Ray actors of the local backend: policy training, the reference model, rollouts.

Each is a plain class (usable and testable without Ray); `backends.local` wraps them
with `ray.remote` and the resources the config asks for.
"""

from .policy import PolicyActor
from .reference import ReferenceActor
from .rollout import RolloutActor

__all__ = ["PolicyActor", "ReferenceActor", "RolloutActor"]
