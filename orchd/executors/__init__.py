"""Executors: where an attempt's process runs: `local` (this machine) or `ray` (a cluster); the seam is `Executor`."""
