"""Where recipes run: `local` (our own Ray actors: policy, reference, rollout workers) or
`openrlhf` (OpenRLHF's job on a GPU cluster).

What both share sits here under names that say so: `keys` (what each backend does with
each config key), `training_records`, `evaluation` (the run's scorer and the evaluation
after training), `signals` (clean stops) and `recipe_cli` (the recipes' command line).
"""
