"""Fake agent with a Claude Code stream: given the prompt `limit SECONDS`, on its first attempt, a
subscription's usage limit that resets SECONDS from now (a rejected `rate_limit_event`), then it
waits to be stopped; otherwise Claude Code's final `result`.

Run as `claude` by tests (a stand-in on PATH); the prompt is its last argument.
"""

import json
import os
import sys
import time

prompt = sys.argv[-1].split()
session = f"s-{os.environ.get('ORCH_TASK_ID', '?')}"
print(json.dumps({"type": "system", "subtype": "init", "session_id": session}), flush=True)
if prompt[0] == "limit" and os.environ.get("ORCH_ATTEMPT") == "1":
    reset = int(time.time() + float(prompt[1]))
    info = {"status": "rejected", "resetsAt": reset, "rateLimitType": "five_hour"}
    print(json.dumps({"type": "rate_limit_event", "rate_limit_info": info}), flush=True)
    time.sleep(60)  # orch stops it once it reads the limit
    sys.exit(1)
result = {"type": "result", "subtype": "success", "is_error": False, "result": "after the reset"}
print(json.dumps({**result, "session_id": session, "total_cost_usd": 0.001}), flush=True)
