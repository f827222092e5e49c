"""Learning layer: PyTorch models, device policy, patches, the training engine, strategies."""
