"""Training: loops, checkpoints, resume."""
