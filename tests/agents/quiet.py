"""Fake agent: print one line, then say nothing until killed (or for SECONDS).

usage: quiet.py [SECONDS]
"""

import sys
import time

print("started", flush=True)
time.sleep(float(sys.argv[1]) if len(sys.argv) > 1 else 3600)
print("done", flush=True)
