"""Surviving what clusters do to actors (`resilience.*`): every wait is bounded and names
the actor it waited on, and a lost actor is told apart by what it held.

- `wait_for(refs, actors, timeout_s)`: the results of calls to the named actors, or
  `ActorLost` naming the first that died (with Ray's reason: killed, out of memory, its
  node lost) or did not answer in time (a hang is a loss: nothing waits forever).
- `RestartBudget`: at most `resilience.max_actor_restarts` new starts per actor; past it,
  the run stops with the reason.
- Rollout workers and references hold nothing a run cannot rebuild: the backend starts a
  new one where the old one was, gives a new rollout worker the current weights, and redoes
  the step's experience with the same seeds (`actor_groups.GRPOActors.replace`). A policy
  rank holds the training: the run restarts from its last checkpoint (`grpo.run_grpo`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import ray
from ray.exceptions import ActorUnavailableError, RayActorError

logger = logging.getLogger(__name__)

# Stateless kinds: a new one of these continues the run where the lost one was.
STATELESS = ("rollout", "reference")


@dataclass(frozen=True)
class ActorRef:
    """Which actor a call went to: its kind (policy, reference, rollout) and index."""

    kind: str
    index: int = 0

    def __str__(self) -> str:
        noun = {"policy": "policy rank", "rollout": "rollout worker", "reference": "reference worker"}
        return f"{noun.get(self.kind, self.kind)} {self.index}"

    @classmethod
    def named(cls, name: str) -> ActorRef:
        """The actor the plan names `name` ("policy", "policy rank 1", "rollout 0", …).

        >>> [str(ActorRef.named(n)) for n in ("policy", "policy rank 1", "reference 0", "rollout 2")]
        ['policy rank 0', 'policy rank 1', 'reference worker 0', 'rollout worker 2']
        """
        words = name.split()
        return cls(words[0], int(words[-1]) if len(words) > 1 and words[-1].isdigit() else 0)


class ActorLost(RuntimeError):
    """An actor that died, or did not answer within its bound."""

    def __init__(self, actor: ActorRef, reason: str) -> None:
        super().__init__(f"{actor} was lost: {reason}")
        self.actor, self.reason = actor, reason

    @property
    def stateless(self) -> bool:
        return self.actor.kind in STATELESS


def death_reason(error: BaseException) -> str:
    """Ray's reason for an actor's death, in a few words (from what Ray says, not from the
    list of possible causes it appends to a dead worker's message)."""
    if getattr(error, "preempted", False):
        return "its node was preempted"
    text = str(error)
    because = re.search(r"because (.+?)\.(?:\s|$)", text)
    said = (because.group(1) if because else text).lower()
    if "low on memory" in text.lower() or "memory pressure" in said or "out of memory" in said:
        return "out of memory"
    if "ray.kill" in said:
        return "killed (ray.kill)"
    if "node" in said and any(word in said for word in ("died", "dead", "removed", "lost")):
        return "its node was lost"
    if isinstance(error, ActorUnavailableError) or " is unavailable" in text:
        return "unreachable (its node or its process is gone)"
    if "worker process has died" in said or "died unexpectedly" in text.lower():
        exit_type = re.search(r"Worker exit type: (\w+)", text)
        detail = f" ({exit_type.group(1)})" if exit_type else ""
        return f"its process was killed or exited{detail}"
    return next((line.strip() for line in text.splitlines() if line.strip()), type(error).__name__)[:200]


def wait_for(refs: Sequence, actors: Sequence[ActorRef], timeout_s: float, bound: str | None = None):
    """The results of `refs` (calls to `actors`, in order), or `ActorLost` naming the actor
    that died or did not answer within `timeout_s` (`bound`: the limit as said, by default
    `resilience.call_timeout_s=<timeout_s> s`). An actor whose constructor raised is not
    lost: Ray's error, with the constructor's traceback, is raised as it is, since an actor
    started again would fail the same way."""
    refs = list(refs)
    ready, pending = ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
    answered = set(ready)
    results = []
    # Those that answered first: one that failed is the cause, the late ones wait on it.
    for ref, actor in zip(refs, actors):
        if ref in answered:
            try:
                results.append(ray.get(ref))
            except RayActorError as error:
                if error.actor_init_failed:
                    raise
                raise ActorLost(actor, death_reason(error)) from error
    if pending:
        late = next(actor for ref, actor in zip(refs, actors) if ref in pending)
        raise ActorLost(late, f"did not answer within {bound or f'resilience.call_timeout_s={timeout_s:g} s'}")
    return results


@dataclass
class RestartBudget:
    """New starts left per actor (`resilience.max_actor_restarts`)."""

    limit: int
    spent: dict[ActorRef, int] = field(default_factory=dict)

    def spend(self, lost: ActorLost) -> int:
        """Count one restart of the lost actor (its number), or re-raise past the limit."""
        count = self.spent.get(lost.actor, 0) + 1
        if count > self.limit:
            raise RuntimeError(
                f"{lost.actor} was lost again ({lost.reason}) after {self.limit} restart(s) "
                "(resilience.max_actor_restarts): stopping; the last checkpoint is kept"
            ) from lost
        self.spent[lost.actor] = count
        return count
