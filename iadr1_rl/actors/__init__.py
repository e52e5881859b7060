"""Ray actors of the local backend: policy training, the reference model, rollouts.

Each is a plain class, usable and testable without Ray; the local backend's actor groups
(`backends/local/actor_groups.py`) start them as Ray actors with the resources the config asks for.
"""

from .policy import PolicyActor
from .reference import ReferenceActor
from .rollout import RolloutActor

__all__ = ["PolicyActor", "ReferenceActor", "RolloutActor"]
