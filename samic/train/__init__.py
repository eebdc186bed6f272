"""Training: data, losses, the trainer and weight export."""
