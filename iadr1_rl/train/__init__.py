"""Training math and plumbing: config, SFT and GRPO losses, batches, checkpoints, logs."""
