"""Fake agent: wait until the file GATE exists, then print DONE and exit 0.

usage: gate.py GATE
"""

import os
import sys
import time

gate = sys.argv[1]
while not os.path.exists(gate):  # a fake agent's own wait: tests open the gate when they are ready
    time.sleep(0.01)
print("done", flush=True)
