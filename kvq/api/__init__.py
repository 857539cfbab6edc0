"""Scoring videos with a trained checkpoint: model loading, video expansion, the Scorer."""
