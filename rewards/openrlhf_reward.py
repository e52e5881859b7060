"""The OpenRLHF reward file's earlier path, kept for command lines that name it
(`--reward.remote_url rewards/openrlhf_reward.py`): everything is
`rewards/integrations/openrlhf.py`'s."""

from rewards.integrations.openrlhf import get_remote, get_scorer, reward_func

__all__ = ["get_remote", "get_scorer", "reward_func"]
