"""Training: the trainer, EMA, optimiser and schedule, losses, preflight checks, output folders, the n-split protocol."""
