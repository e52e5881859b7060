"""The reward server on Ray Serve, for when one machine is not enough.

    serve run rewards.ray_serve:deployment            # replicas: IADR1_REWARD_REPLICAS (2)

or from Python:

    from ray import serve
    from rewards.ray_serve import build
    serve.run(build(num_replicas=8), route_prefix="/")

Each replica builds the same FastAPI app (and one scorer) as `iadr1-reward-server`,
configured by the same environment variables (IADR1_SCORER_CONFIG, IADR1_REWARD_TOKEN,
…); Ray Serve's proxy spreads requests over the replicas.
"""

from __future__ import annotations

import os

from ray import serve

from .server.app import app_from_env


@serve.ingress(app_from_env)
class RewardServer:
    """A Ray Serve replica around the reward server app."""


def build(num_replicas: int = 2, num_cpus: float = 1.0):
    """A bound deployment with `num_replicas` replicas of `num_cpus` each."""
    deployment = serve.deployment(RewardServer, name="iadr1_reward_server")
    return deployment.options(num_replicas=num_replicas, ray_actor_options={"num_cpus": num_cpus}).bind()


deployment = build(
    num_replicas=int(os.environ.get("IADR1_REWARD_REPLICAS", "2")),
    num_cpus=float(os.environ.get("IADR1_REWARD_REPLICA_CPUS", "1")),
)
