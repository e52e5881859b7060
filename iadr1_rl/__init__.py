"""iadr1-rl: data, models, training and evaluation for IAD-R1 (PA-SFT then SC-GRPO)."""

__version__ = "0.1.0"
