"""Training: the plan, the batch stream, the step loop and its guard, checkpoints, evaluation."""
