"""Fake Claude Code whose work passes its task's check only once it was told why it failed.

Run as `claude` by tests (a stand-in on PATH). It writes `out.txt`: "good" when its prompt quotes
the failing check's output ("checking"), else "bad"; prints its prompt and whether it resumed a
session, then Claude Code's final `result` event (with a session id, for `resume = true`).
"""

import json
import os
import sys
from pathlib import Path

prompt = sys.argv[-1]
resumed = sys.argv[sys.argv.index("--resume") + 1] if "--resume" in sys.argv else "-"
Path("out.txt").write_text("good\n" if "checking" in prompt else "bad\n")
print(f"resumed: {resumed}")
print("prompt: " + prompt.replace("\n", "\\n"), flush=True)
session = f"s-{os.environ['ORCH_TASK_ID']}-{os.environ['ORCH_ATTEMPT']}"
result = {"type": "result", "subtype": "success", "is_error": False, "result": "wrote out.txt"}
print(json.dumps({**result, "session_id": session, "total_cost_usd": 0.001}), flush=True)
