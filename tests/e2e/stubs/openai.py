"""A stub of the OpenAI Responses API as Codex uses it (a `[model_providers.*]` entry in CODEX_HOME/config.toml).

Codex 0.169 and 0.171 call `POST {base_url}/responses` with `stream: true` and reads
the server-sent events `response.created`, `response.output_item.done` (each
finished output item: a message, a function call, a custom tool call) and
`response.completed` (with usage). Each request names the thread in its
`session-id` header. A `WriteFile` step becomes an `apply_patch` custom tool
call (the freeform tool Codex offers to models it knows, e.g. `gpt-5.5`).

Errors are the API's: `{"error": {"message", "type", "param", "code"}}` with
`x-request-id`, and on a 429 the `x-ratelimit-*` counters (and `retry-after`
when the stub is told when to come back). A ChatGPT plan's usage limit is a
429 of type `usage_limit_reached` with `plan_type` and `resets_at` (unix
seconds), and the `x-codex-primary-*` window headers (codex-rs/core/src/api_bridge.rs).
"""

from __future__ import annotations

import itertools
import json
import math
from typing import Any

from tests.e2e.stubs.base import Fail, Handler, Reply, Request, StubServer, WriteFile

_ids = itertools.count(1)


RATE_LIMIT = (
    "Rate limit reached for gpt-5.5 in organization org-stub on requests per min (RPM): "
    "Limit 50, Used 50, Requested 1. Please try again in {wait}. Visit "
    "https://platform.openai.com/account/rate-limits to learn more."
)


def rate_limit_headers(retry_after: float | None) -> dict[str, str]:
    """What the API sends with a 429: its request counters, and when to come back."""
    headers = {
        "x-ratelimit-limit-requests": "50",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": f"{retry_after or 1.2:g}s",
    }
    if retry_after is not None:
        headers["retry-after"] = str(max(1, math.ceil(retry_after)))
    return headers


class OpenAIStub(StubServer):
    """Serves /v1/responses from the scripted steps."""

    unauthorized = Fail(
        401,
        "invalid_request_error",
        "Incorrect API key provided: sk-orch-***ummy. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
        fields={"code": "invalid_api_key"},
    )
    forbidden = Fail(
        403,
        "invalid_request_error",
        "You have insufficient permissions for this operation. Missing scopes: api.responses.write.",
        fields={"code": "insufficient_permissions"},
    )
    rate_limited = Fail(
        429,
        "requests",
        RATE_LIMIT.format(wait="1.2s"),
        rate_limit_headers(None),
        {"code": "rate_limit_exceeded"},
    )
    quota = Fail(
        429,
        "insufficient_quota",
        "You exceeded your current quota, please check your plan and billing details.",
        fields={"code": "insufficient_quota"},
    )
    overloaded = Fail(
        503, "server_error", "The engine is currently overloaded, please try again later."
    )
    server_error = Fail(
        500,
        "server_error",
        "The server had an error while processing your request. Sorry about that!",
    )
    unavailable = Fail(503, "server_error", "Service Unavailable")

    @property
    def final_rate_limit(self) -> Fail:  # the rig turns the CLI's own retries off
        return self.rate_limited

    def too_many(self, retry_after: float) -> Fail:
        return Fail(
            429,
            "requests",
            RATE_LIMIT.format(wait=f"{retry_after:g}s"),
            rate_limit_headers(retry_after),
            {"code": "rate_limit_exceeded"},
        )

    def usage_limit(self, reset: float) -> Fail:
        headers = {
            "x-codex-primary-used-percent": "100.0",
            "x-codex-primary-window-minutes": "300",
            "x-codex-primary-reset-at": str(int(reset)),
            "x-codex-secondary-used-percent": "41.0",
            "x-codex-secondary-window-minutes": "10080",
        }
        return Fail(
            429,
            "usage_limit_reached",
            "The usage limit has been reached",
            headers,
            {"plan_type": "plus", "resets_at": int(reset)},
        )

    def error_body(self, fail: Fail) -> Any:
        return {
            "error": {
                "message": fail.message,
                "type": fail.kind,
                "param": None,
                "code": fail.kind,
                **fail.fields,
            }
        }

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
            http.send_fail(step)
            return
        http.send_sse(_stream(step, body.get("model", "gpt-stub")), step.headers)


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
