"""Fake agent with a Claude Code stream: ledger.py's lines, and output that ends with Claude
Code's final `result` event, so its stream states its outcome (orch can prove it from the log).

Run as `claude` by tests (a stand-in on PATH); the ledger comes from ORCH_LEDGER and the
seconds to work from the end of its prompt (its last argument).
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ledger import ATTEMPT, TASK, note, start

ledger, seconds = os.environ["ORCH_LEDGER"], float(sys.argv[-1].split()[-1])
start(ledger)
session = f"s-{TASK}-{ATTEMPT}"
print(json.dumps({"type": "system", "subtype": "init", "session_id": session}), flush=True)
time.sleep(seconds)
result = {
    "type": "result",
    "subtype": "success",
    "is_error": False,
    "result": f"{TASK} done after {seconds}s",
    "session_id": session,
    "total_cost_usd": 0.001,
    "usage": {"input_tokens": 10, "output_tokens": 5},
}
print(json.dumps(result), flush=True)
note(ledger, "end")
os._exit(0)
