"""Fake agent: print N numbered lines, flushing each, pausing every 100 lines.

usage: count.py N
"""

import sys
import time

for i in range(1, int(sys.argv[1]) + 1):
    print(f"line {i}", flush=True)
    if i % 100 == 0:
        time.sleep(0.05)
