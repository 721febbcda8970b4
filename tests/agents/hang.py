"""Fake agent: ignore SIGTERM, start a child that ignores it too, write both pids to PIDFILE, hang.
With --leave-group the child leaves the agent's process group (a session of its own).

usage: hang.py PIDFILE [--leave-group]
"""

import os
import signal
import subprocess
import sys
import time

signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen(
    [
        sys.executable,
        "-c",
        "import signal,time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "while True: time.sleep(3600)",
    ],
    start_new_session="--leave-group" in sys.argv[2:],
)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(f"{os.getpid()} {child.pid}\n")
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
print("hanging", flush=True)
while True:
    time.sleep(3600)
