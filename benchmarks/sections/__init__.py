"""One module per benchmark section; benchmarks/run.py runs them."""
