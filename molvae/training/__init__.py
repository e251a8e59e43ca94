"""Training: the loop, its config, schedules, distributed setup, evaluation, checkpoints."""
