"""The scorer in RL frameworks' own reward shapes (docs/integrations.md).

- `trl`: four reward functions for TRL's `GRPOTrainer`, one per part of the reward;
- `verl`: `compute_score` for verl's `custom_reward_function`;
- `easyr1`: the batch `compute_score` of EasyR1's reward-function files.

Each goes through `Scorer` and imports no framework: the framework imports it.
"""
