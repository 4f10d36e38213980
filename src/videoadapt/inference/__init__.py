"""Using a trained run: evaluate it on a split, predict on a user's videos. Never imports the training loop."""
