"""Speed and memory benchmarks (benchmarks/run.py is the command)."""
