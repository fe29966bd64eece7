"""Training: data batches, the optimisation loop (single process or DDP), logs and plots."""
