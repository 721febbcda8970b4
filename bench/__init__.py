"""orch's benchmarks: `python -m bench [PART] [options]` (see bench/README.md)."""
