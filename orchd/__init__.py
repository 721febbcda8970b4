"""orchd: the orch daemon. Runs plans of agent tasks in parallel, durably."""

__version__ = "0.1.0"
PROTOCOL_VERSION = 1  # of the requests and replies between orchctl and orchd (orchd/protocol.py)
