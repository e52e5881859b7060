"""The local backend: SC-GRPO and PA-SFT with our own Ray actors.

`plan` (a run's settings, read from the config once), `run` (the skeleton both stages
share: folder, resume, logs, checkpoints, final model, evaluation), `experience` (a step's
rollouts, scores, advantages and log-probs), `grpo` and `sft` (the trainer loops),
`actor_groups` (the actors they drive and the weight sync), `ray_env` (Ray start-up and
placement).
"""
