"""Evaluation: correlation metrics, the challenge score, prediction CSVs, calibration, plots, the prediction loop."""
