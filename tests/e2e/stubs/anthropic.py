"""A stub of the Anthropic Messages API as Claude Code uses it (`ANTHROPIC_BASE_URL`).

Claude Code 2.1 calls `HEAD /api/hello` (a reachability probe) and
`POST /v1/messages?beta=true`, streaming (SSE) for the conversation and
non-streaming for some side requests; both are served. Each request carries
the CLI's session id in `X-Claude-Code-Session-Id`.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from typing import Any

from tests.e2e.stubs.base import Fail, Handler, Reply, Request, StubServer, WriteFile

_ids = itertools.count(1)
_CWD_RE = re.compile(r"Primary working directory: (\S+)")


class AnthropicStub(StubServer):
    """Serves /v1/messages from the scripted steps."""

    rate_limited = Fail(
        429, "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"
    )
    unauthorized = Fail(401, "authentication_error", "invalid x-api-key")

    def session_of(self, headers: dict[str, str], body: Any) -> str | None:
        return (
            headers.get("x-claude-code-session-id")
            if isinstance(body, dict) and "messages" in body
            else None
        )

    def route(self, http: Handler, request: Request) -> None:
        if not request.path.startswith("/v1/messages") or request.method != "POST":
            http.send_json(200 if request.method == "HEAD" else 404, {})
            return
        body = request.body
        conversation = json.dumps(body.get("messages", []))
        step = self.next_step(conversation)
        request.answer = step
        if isinstance(step, Fail):
            http.send_json(
                step.status,
                {
                    "type": "error",
                    "error": {"type": step.kind, "message": step.message, **step.fields},
                },
                step.headers,
            )
            return
        if isinstance(step, Reply) and step.delay:
            time.sleep(step.delay)  # a model that takes its time: the session waits on its answer
        message = _message(step, body.get("model", "claude-stub"), _cwd(json.dumps(body)))
        if body.get("stream"):
            http.send_sse(_stream(message))
        else:
            http.send_json(200, message)


def _cwd(text: str) -> str:
    match = _CWD_RE.search(text)
    return match.group(1).rstrip("\\n") if match else "."


def _message(step: Reply | WriteFile, model: str, cwd: str) -> dict[str, Any]:
    """A complete Messages API response for `step`."""
    n = next(_ids)
    if isinstance(step, WriteFile):
        path = step.path if step.path.startswith("/") else f"{cwd}/{step.path}"
        content = [
            {
                "type": "tool_use",
                "id": f"toolu_stub{n:08d}",
                "name": "Write",
                "input": {"file_path": path, "content": step.content},
            }
        ]
        stop, tokens_in, tokens_out = "tool_use", 100, 20
    else:
        content = [{"type": "text", "text": step.text}]
        stop, tokens_in, tokens_out = "end_turn", step.tokens_in, step.tokens_out
    return {
        "id": f"msg_stub{n:08d}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {
            "input_tokens": tokens_in,
            "output_tokens": tokens_out,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }


def _stream(message: dict[str, Any]) -> list[tuple[str, Any]]:
    """The SSE events that stream `message`: start, one block at a time, delta with usage, stop."""
    usage = message["usage"]
    start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    events: list[tuple[str, Any]] = [("message_start", {"type": "message_start", "message": start})]
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            opening, delta = (
                {"type": "text", "text": ""},
                {"type": "text_delta", "text": block["text"]},
            )
        else:
            opening = {**block, "input": {}}
            delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
        events += [
            (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": opening},
            ),
            (
                "content_block_delta",
                {"type": "content_block_delta", "index": index, "delta": delta},
            ),
            ("content_block_stop", {"type": "content_block_stop", "index": index}),
        ]
    events += [
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": usage["output_tokens"]},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return events
