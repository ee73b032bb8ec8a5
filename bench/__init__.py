"""tokenbank's benchmark: ``python -m bench.run`` (see docs/BENCHMARKS.md)."""
