"""Fake agent for the Ray tests: note `start`/`end` with the Ray node it runs on (ORCH_NODE); sleep between.

usage: node_agent.py NOTES SECONDS [EXIT_CODE]
"""

import os
import sys
import time

notes, seconds = sys.argv[1], float(sys.argv[2])
code = int(sys.argv[3]) if len(sys.argv) > 3 else 0
task, attempt = os.environ.get("ORCH_TASK_ID", "?"), os.environ.get("ORCH_ATTEMPT", "?")
node = os.environ.get("ORCH_NODE", "none")


def note(what: str) -> None:
    fd = os.open(notes, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.write(fd, f"{what} {task} {attempt} {node} {time.monotonic():.6f} {os.getpid()}\n".encode())
    os.close(fd)


note("start")
time.sleep(seconds)
note("end")
print(f"{task} done on {node[:8]} after {seconds}s")
sys.exit(code)
