"""A stub of the Anthropic Messages API as Claude Code uses it (`ANTHROPIC_BASE_URL`).

Claude Code 2.1 calls `HEAD /api/hello` (a reachability probe) and
`POST /v1/messages?beta=true`, streaming (SSE) for the conversation and
non-streaming for some side requests; both are served. Each request carries
the CLI's session id in `X-Claude-Code-Session-Id`.

Errors are the API's: `{"type": "error", "error": {"type", "message"}, "request_id"}`
with its headers (`request-id`, `x-should-retry`, and on a 429 the
`anthropic-ratelimit-*` counters and `retry-after` in whole seconds). A Claude
subscription's usage limit is a 429 whose `anthropic-ratelimit-unified-*`
headers say `rejected`, which window (`representative-claim`: `five_hour`,
`seven_day`, ...) and when it resets (unix seconds); see docs/providers.md.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import time
from typing import Any

from tests.e2e.stubs.base import Fail, Handler, ReadFile, Reply, Request, StubServer, WriteFile

_ids = itertools.count(1)
_CWD_RE = re.compile(r"Primary working directory: (\S+)")


RETRYABLE = {"x-should-retry": "true"}  # the API marks 429, 5xx and 529 retryable


def rate_limit_headers(retry_after: float | None) -> dict[str, str]:
    """What the API sends with an API key's 429: the request counters, and when to come back."""
    later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + (retry_after or 60)))
    headers = {
        **RETRYABLE,
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": later,
        "anthropic-ratelimit-input-tokens-limit": "30000",
        "anthropic-ratelimit-input-tokens-remaining": "0",
        "anthropic-ratelimit-input-tokens-reset": later,
    }
    if retry_after is not None:  # whole seconds, as the API sends it
        headers["retry-after"] = str(max(1, math.ceil(retry_after)))
    return headers


def unified_headers(status: str, reset: float, claim: str = "five_hour") -> dict[str, str]:
    """A Claude subscription's usage windows, as the API reports them on every response."""
    week = int(reset) + 4 * 86400
    return {
        "anthropic-ratelimit-unified-status": status,
        "anthropic-ratelimit-unified-reset": str(int(reset)),
        "anthropic-ratelimit-unified-representative-claim": claim,
        "anthropic-ratelimit-unified-5h-status": status,
        "anthropic-ratelimit-unified-5h-reset": str(int(reset)),
        "anthropic-ratelimit-unified-5h-utilization": "1.0" if status == "rejected" else "0.42",
        "anthropic-ratelimit-unified-7d-status": "allowed",
        "anthropic-ratelimit-unified-7d-reset": str(week),
        "anthropic-ratelimit-unified-7d-utilization": "0.31",
        "anthropic-ratelimit-unified-fallback-percentage": "0.5",
        "anthropic-ratelimit-unified-overage-status": "rejected",
        "anthropic-ratelimit-unified-overage-disabled-reason": "org_level_disabled",
    }


class AnthropicStub(StubServer):
    """Serves /v1/messages from the scripted steps."""

    unauthorized = Fail(401, "authentication_error", "invalid x-api-key")
    forbidden = Fail(
        403,
        "permission_error",
        "Your API key does not have permission to use the specified resource.",
    )
    rate_limited = Fail(
        429,
        "rate_limit_error",
        "Number of request tokens has exceeded your per-minute rate limit",
        rate_limit_headers(None),
    )
    overloaded = Fail(529, "overloaded_error", "Overloaded", RETRYABLE)
    server_error = Fail(500, "api_error", "Internal server error", RETRYABLE)
    unavailable = Fail(503, "api_error", "Service Unavailable", RETRYABLE)

    @property
    def final_rate_limit(self) -> Fail:  # the rig turns the CLI's own retries off
        return self.rate_limited

    def too_many(self, retry_after: float) -> Fail:
        return Fail(
            429,
            "rate_limit_error",
            "Number of request tokens has exceeded your per-minute rate limit",
            rate_limit_headers(retry_after),
        )

    def usage_limit(self, reset: float) -> Fail:
        return Fail(
            429,
            "rate_limit_error",
            "This request would exceed your account's rate limit. Please try again later.",
            {**RETRYABLE, **unified_headers("rejected", reset)},
        )

    def error_body(self, fail: Fail) -> Any:
        error = {"type": fail.kind, "message": fail.message, **fail.fields}
        return {"type": "error", "error": error, "request_id": f"req_stub{next(_ids):08d}"}

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
            http.send_fail(step)
            return
        message = _message(step, body.get("model", "claude-stub"), _cwd(json.dumps(body)))
        if body.get("stream"):
            http.send_sse(_stream(message), step.headers)
        else:
            http.send_json(200, message, step.headers)


def _cwd(text: str) -> str:
    match = _CWD_RE.search(text)
    return match.group(1).rstrip("\\n") if match else "."


def _message(step: Reply | WriteFile | ReadFile, model: str, cwd: str) -> dict[str, Any]:
    """A complete Messages API response for `step`."""
    n = next(_ids)
    if isinstance(step, (WriteFile, ReadFile)):
        path = step.path if step.path.startswith("/") else f"{cwd}/{step.path}"
        tool, arguments = (
            ("Write", {"file_path": path, "content": step.content})
            if isinstance(step, WriteFile)
            else ("Read", {"file_path": path})
        )
        content = [
            {
                "type": "tool_use",
                "id": f"toolu_stub{n:08d}",
                "name": tool,
                "input": arguments,
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
