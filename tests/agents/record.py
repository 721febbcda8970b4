"""Fake agent: append `start` and `end` lines (with a monotonic time) to a file; sleep between.

Each line: WHAT TASK ATTEMPT MONOTONIC WALL PID NODE (NODE: the Ray node it ran on, from ORCH_NODE, or "-").

usage: record.py LOGFILE SECONDS [EXIT_CODE]
"""

import os
import sys
import time

log, seconds = sys.argv[1], float(sys.argv[2])
code = int(sys.argv[3]) if len(sys.argv) > 3 else 0
task = os.environ.get("ORCH_TASK_ID", "?")
attempt = os.environ.get("ORCH_ATTEMPT", "?")
node = os.environ.get("ORCH_NODE", "-")


def note(what: str) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.write(
        fd,
        f"{what} {task} {attempt} {time.monotonic():.6f} {time.time():.6f} {os.getpid()} {node}\n".encode(),
    )
    os.close(fd)


note("start")
time.sleep(seconds)
note("end")
print(f"{task} done after {seconds}s")
sys.exit(code)
