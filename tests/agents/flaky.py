"""Fake agent: fail the first N attempts (by ORCH_ATTEMPT), then succeed. Notes each start in LOGFILE.

usage: flaky.py LOGFILE N
"""

import os
import sys
import time

log, failures = sys.argv[1], int(sys.argv[2])
attempt = int(os.environ["ORCH_ATTEMPT"])
with open(log, "a") as f:
    f.write(f"{attempt} {time.time():.6f}\n")
if attempt <= failures:
    print(f"attempt {attempt}: failing on purpose", file=sys.stderr)
    sys.exit(1)
print(f"attempt {attempt}: ok")
