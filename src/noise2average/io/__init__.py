"""Edges: files in and out (NIfTI, weights, sidecars, checkpoints). Only this layer sees paths."""
