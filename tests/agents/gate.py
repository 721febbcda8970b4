"""Fake agent: print each TEXT line, wait until the file GATE exists, then print DONE and exit 0.

usage: gate.py GATE [TEXT ...]
"""

import os
import sys
import time

gate = sys.argv[1]
for text in sys.argv[2:]:
    print(text, flush=True)
while not os.path.exists(gate):  # a fake agent's own wait: tests open the gate when they are ready
    time.sleep(0.01)
print("done", flush=True)
