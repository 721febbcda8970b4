"""Fake agent: write BYTES bytes of output (in 16 KiB pieces), then `done`; fails if it cannot.

usage: spew.py BYTES [GATE]   (with GATE: wait until that file exists before writing)
"""

import os
import sys
import time

size = int(sys.argv[1])
if len(sys.argv) > 2:
    while not os.path.exists(sys.argv[2]):  # a fake agent's own wait: the test opens the gate
        time.sleep(0.01)
piece = b"x" * 16383 + b"\n"
written = 0
while written < size:
    written += os.write(1, piece[: size - written])
os.write(1, b"done\n")
