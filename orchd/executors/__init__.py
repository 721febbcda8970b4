"""Executors: where an attempt's process runs. `local` first; the seam is `Executor`."""
