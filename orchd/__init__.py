"""orchd: the orch daemon. Runs plans of agent tasks in parallel, durably."""

__version__ = "0.1.0"
