"""Fake agent: append `start` to a ledger, work for SECONDS, append `end`, and exit at once.

Each line: WHAT TASK ATTEMPT MONOTONIC PID. The `end` line is its last act (no interpreter
teardown after it), so an `end` means the attempt finished its work. At its start it also
checks the ledger for an earlier attempt of its task that is still alive, and notes
`overlap TASK ATTEMPT ... OTHER_PID` if it finds one.

usage: ledger.py LEDGER SECONDS
"""

import os
import sys
import time

TASK, ATTEMPT = os.environ.get("ORCH_TASK_ID", "?"), os.environ.get("ORCH_ATTEMPT", "?")


def note(ledger: str, what: str, extra: str = "") -> None:
    fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    line = f"{what} {TASK} {ATTEMPT} {time.monotonic():.6f} {os.getpid()}{extra}\n"
    os.write(fd, line.encode())
    os.close(fd)


def running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rpartition(b")")[2].split()[0] not in (b"Z", b"X")
    except OSError:
        return False


def start(ledger: str) -> None:
    """Note the start, and any earlier attempt of this task still alive."""
    note(ledger, "start")
    try:
        with open(ledger) as f:
            earlier = [line.split() for line in f]
    except OSError:
        earlier = []
    ended = {(w[1], w[2]) for w in earlier if w[0] == "end"}
    for w in earlier:
        if w[0] == "start" and w[1] == TASK and w[2] != ATTEMPT and (w[1], w[2]) not in ended:
            if running(int(w[4])):
                note(ledger, "overlap", f" {w[4]}")


if __name__ == "__main__":
    path, seconds = sys.argv[1], float(sys.argv[2])
    start(path)
    time.sleep(seconds)
    print(f"{TASK} done after {seconds}s", flush=True)
    note(path, "end")
    os._exit(0)
