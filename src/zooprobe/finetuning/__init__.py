"""Fine-tuning a backbone with a strategy, against a train-from-scratch baseline, epoch by epoch."""
