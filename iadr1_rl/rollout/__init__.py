"""Rollout engines behind one interface: encoded prompts in, one group of G completions
per prompt out (token ids, text, finish reason, and the sampling log-probs when the engine
has them). `rollout.engine` in the config names the engine; the rollout actor holds one.
"""

from .engine import ENGINES, Completion, RolloutEngine, build_engine, sample_seed, sample_seeds

__all__ = ["ENGINES", "Completion", "RolloutEngine", "build_engine", "sample_seed", "sample_seeds"]
