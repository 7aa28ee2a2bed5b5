"""Fitting models on the user's own footage: anomaly predictor, codebook, HNeRV (and its codec)."""
