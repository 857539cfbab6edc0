"""Scoring videos with a trained checkpoint: loading (checkpoint -> config, model), scoring (the one scoring path), videos (--videos paths), the Scorer."""
