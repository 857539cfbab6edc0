"""Feature extraction: the SlowFast feature cache of SimpleVQA."""
