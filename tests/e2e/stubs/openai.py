"""A stub of the OpenAI Responses API as Codex uses it (a `[model_providers.*]` entry in CODEX_HOME/config.toml).

Codex 0.169 calls `POST {base_url}/responses` with `stream: true` and reads
the server-sent events `response.created`, `response.output_item.done` (each
finished output item: a message, a function call, a custom tool call) and
`response.completed` (with usage). Each request names the thread in its
`session-id` header. A `WriteFile` step becomes an `apply_patch` custom tool
call (the freeform tool Codex offers to models it knows, e.g. `gpt-5.5`).
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from tests.e2e.stubs.base import Fail, Handler, Reply, Request, StubServer, WriteFile

_ids = itertools.count(1)


class OpenAIStub(StubServer):
    """Serves /v1/responses from the scripted steps."""

    rate_limited = Fail(429, "rate_limit_exceeded", "Rate limit reached for requests")
    unauthorized = Fail(401, "invalid_api_key", "Incorrect API key provided.")

    def session_of(self, headers: dict[str, str], body: Any) -> str | None:
        return headers.get("session-id") if isinstance(body, dict) and "input" in body else None

    def route(self, http: Handler, request: Request) -> None:
        if not request.path.startswith("/v1/responses") or request.method != "POST":
            http.send_json(
                404,
                {"error": {"message": f"no route {request.path}", "type": "invalid_request_error"}},
            )
            return
        body = request.body
        conversation = json.dumps(
            [item for item in body.get("input", []) if item.get("role") != "developer"]
        )
        step = self.next_step(conversation)
        request.answer = step
        if isinstance(step, Fail):
            http.send_json(
                step.status,
                {
                    "error": {
                        "type": step.kind,
                        "code": step.kind,
                        "message": step.message,
                        **step.fields,
                    }
                },
                step.headers,
            )
            return
        http.send_sse(_stream(step, body.get("model", "gpt-stub")))


def _item(step: Reply | WriteFile) -> dict[str, Any]:
    n = next(_ids)
    if isinstance(step, WriteFile):
        lines = "".join(f"+{line}\n" for line in step.content.splitlines())
        patch = f"*** Begin Patch\n*** Add File: {step.path}\n{lines}*** End Patch\n"
        return {
            "type": "custom_tool_call",
            "id": f"ctc_stub{n:08d}",
            "status": "completed",
            "call_id": f"call_stub{n:08d}",
            "name": "apply_patch",
            "input": patch,
        }
    return {
        "type": "message",
        "id": f"msg_stub{n:08d}",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": step.text, "annotations": []}],
    }


def _stream(step: Reply | WriteFile, model: str) -> list[tuple[str, Any]]:
    """The SSE events of one response holding one output item."""
    response_id = f"resp_stub{next(_ids):08d}"
    item = _item(step)
    tokens_in, tokens_out = (
        (step.tokens_in, step.tokens_out) if isinstance(step, Reply) else (100, 20)
    )
    usage = {
        "input_tokens": tokens_in,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": tokens_out,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": tokens_in + tokens_out,
    }
    response = {
        "id": response_id,
        "object": "response",
        "model": model,
        "status": "in_progress",
        "output": [],
    }
    events: list[tuple[str, Any]] = [
        (
            "response.created",
            {"type": "response.created", "sequence_number": 0, "response": response},
        ),
        (
            "response.output_item.added",
            {
                "type": "response.output_item.added",
                "sequence_number": 1,
                "output_index": 0,
                "item": {**item, "status": "in_progress"},
            },
        ),
    ]
    if item["type"] == "message":
        events.append(
            (
                "response.output_text.delta",
                {
                    "type": "response.output_text.delta",
                    "sequence_number": 2,
                    "item_id": item["id"],
                    "output_index": 0,
                    "content_index": 0,
                    "delta": item["content"][0]["text"],
                },
            )
        )
    events += [
        (
            "response.output_item.done",
            {
                "type": "response.output_item.done",
                "sequence_number": 3,
                "output_index": 0,
                "item": item,
            },
        ),
        (
            "response.completed",
            {
                "type": "response.completed",
                "sequence_number": 4,
                "response": {**response, "status": "completed", "output": [item], "usage": usage},
            },
        ),
    ]
    return events
