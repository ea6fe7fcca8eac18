"""loom-agent benchmarks (run `python bench/probes.py`)."""
