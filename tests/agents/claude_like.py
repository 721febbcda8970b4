"""Fake Claude Code: stream-json as `claude -p --output-format stream-json` prints it.

Attempts up to FAKE_CLAUDE_LIMITED (ORCH_ATTEMPT, default 0) meet a 429 before any answer: they
print the CLI's `api_retry` and wait, as the CLI does; later attempts answer and succeed.
"""

import json
import os
import sys
import time

SESSION = f"fake-{os.environ.get('ORCH_TASK_ID', 't')}-{os.environ.get('ORCH_ATTEMPT', '1')}"


def say(event: dict) -> None:
    print(json.dumps({**event, "session_id": SESSION}), flush=True)


say({"type": "system", "subtype": "init", "model": "claude-fake"})
if int(os.environ.get("ORCH_ATTEMPT", "1")) <= int(os.environ.get("FAKE_CLAUDE_LIMITED", "0")):
    retry = {"type": "system", "subtype": "api_retry", "attempt": 1, "max_retries": 10}
    say({**retry, "retry_delay_ms": 300, "error_status": 429, "error": "rate_limit"})
    time.sleep(60)  # the CLI waits for its next try: orch should not let it
    sys.exit(1)
usage = {"input_tokens": 10, "output_tokens": 5}
message = {"id": "msg_1", "role": "assistant", "content": [{"type": "text", "text": "Hello."}]}
say({"type": "assistant", "message": {**message, "usage": usage}})
say(
    {
        "type": "result",
        "subtype": "success",
        "is_error": False,
        "result": "Hello.",
        "total_cost_usd": 0.001,
        "usage": usage,
    }
)
