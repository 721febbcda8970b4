"""A stub of the Gemini API (generativelanguage, v1beta) as Gemini CLI uses it (`GOOGLE_GEMINI_BASE_URL`).

Gemini CLI 0.61 calls `POST /v1beta/models/MODEL:streamGenerateContent?alt=sse`
for the conversation and reads server-sent events, each a
`GenerateContentResponse` (candidates with content parts, the last one with
`finishReason` and `usageMetadata`). Without a model named it first asks
`:generateContent` to route the prompt; that is served too (a JSON answer
naming a simple task), but the tests name a model so it is not asked.

Requests carry no session id, so a session is named by the first turn of the
conversation, which Gemini CLI sends again with every request of a session:
the workspace directory and the prompt (not the `<session_context>` listing
of the directory, which a resumed session renews). A fresh attempt of the same
task in the same worktree hence counts as the same session. A `WriteFile`
step becomes a `write_file` function call, which Gemini CLI runs and answers
with a `functionResponse` in its next request.

Errors take Google's shape, `{"error": {"code", "message", "status", "details"}}`:
a bad key is 400 INVALID_ARGUMENT with an ErrorInfo `API_KEY_INVALID`; a 429
RESOURCE_EXHAUSTED names its quota in a QuotaFailure (`...PerMinute...`,
`...PerDay...`) and when to come back in a RetryInfo (`retryDelay: "38s"`) and
in its message ("Please retry in 38.3s."). Gemini CLI reads those, never a
Retry-After header. See docs/providers.md for what it does with each.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import time
from typing import Any

from tests.e2e.stubs.base import Fail, Handler, Reply, Request, StubServer, WriteFile

_ids = itertools.count(1)
_PATH_RE = re.compile(
    r"^/v1(?:beta|alpha)?/models/([^:/?]+):(streamGenerateContent|generateContent)"
)
_WORKSPACE_RE = re.compile(r"Workspace Directories:\*\*\\n\s*- (\S+?)\\n")


def error_document(step: Fail) -> dict[str, Any]:
    """The body of a Google API error for `step` (its `kind` is the gRPC status name, e.g. RESOURCE_EXHAUSTED)."""
    return {
        "error": {
            "code": step.status,
            "message": step.message,
            "status": step.kind,
            "details": [],
            **step.fields,
        }
    }


QUOTA_MESSAGE = (
    "You exceeded your current quota, please check your plan and billing details. For more "
    "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.\n"
    "* Quota exceeded for metric: generativelanguage.googleapis.com/{metric}, limit: {limit}, "
    "model: gemini-2.5-flash"
)
HELP = {
    "@type": "type.googleapis.com/google.rpc.Help",
    "links": [
        {
            "description": "Learn more about Gemini API quotas",
            "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
        }
    ],
}


def quota_exceeded(quota_id: str, metric: str, limit: int, retry_after: float | None) -> Fail:
    """A 429 RESOURCE_EXHAUSTED as the Gemini API sends it: the quota, and when to come back."""
    message = QUOTA_MESSAGE.format(metric=metric, limit=limit)
    details: list[dict[str, Any]] = [
        {
            "@type": "type.googleapis.com/google.rpc.QuotaFailure",
            "violations": [
                {
                    "quotaMetric": f"generativelanguage.googleapis.com/{metric}",
                    "quotaId": quota_id,
                    "quotaDimensions": {"location": "global", "model": "gemini-2.5-flash"},
                    "quotaValue": str(limit),
                }
            ],
        },
        HELP,
    ]
    if retry_after is not None:
        message += f"\nPlease retry in {retry_after:.1f}".rstrip("0").rstrip(".") + "s."
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.RetryInfo",
                "retryDelay": f"{int(retry_after)}s",
            }
        )
    return Fail(429, "RESOURCE_EXHAUSTED", message, fields={"details": details})


class GoogleStub(StubServer):
    """Serves the Gemini API's generateContent and streamGenerateContent from the scripted steps."""

    # a quota of 0 requests: Gemini CLI gives up at once (the e2e tests' rate limit, see test_gemini.py)
    final_rate_limit = Fail(
        429,
        "RESOURCE_EXHAUSTED",
        "Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_requests, "
        "limit: 0, model: gemini-2.5-flash",
    )
    rate_limited = Fail(
        429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."
    )
    forbidden = Fail(
        403,
        "PERMISSION_DENIED",
        "Method doesn't allow unregistered callers (callers without established identity). "
        "Please use API Key or other form of API consumer identity to call this API.",
    )
    overloaded = Fail(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")
    unavailable = overloaded
    server_error = Fail(
        500,
        "INTERNAL",
        "An internal error has occurred. Please retry or report in "
        "https://developers.generativeai.google/guide/troubleshooting",
    )
    # the Gemini API answers a bad key with 400, not 401
    unauthorized = Fail(
        400,
        "INVALID_ARGUMENT",
        "API key not valid. Please pass a valid API key.",
        fields={
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                }
            ]
        },
    )
    # quotas Gemini CLI gives up on at once: one that resets in an hour (it says so), a daily one
    retry_in_an_hour = Fail(
        429, "RESOURCE_EXHAUSTED", "You exceeded your current quota. Please retry in 3600s."
    )
    daily_quota = Fail(
        429,
        "RESOURCE_EXHAUSTED",
        "You exceeded your current quota.",
        fields={
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [
                        {
                            "quotaMetric": "generativelanguage.googleapis.com/generate_content_requests",
                            "quotaId": "GenerateRequestsPerDayPerProjectPerModel",
                        }
                    ],
                }
            ]
        },
    )

    def too_many(self, retry_after: float) -> Fail:
        return quota_exceeded(
            "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
            "generate_content_free_tier_requests",
            10,
            retry_after,
        )

    def usage_limit(self, reset: float) -> Fail:
        """The free tier's daily quota (it resets at midnight Pacific time, whatever `reset` says;
        the RetryInfo says how long until `reset`)."""
        return quota_exceeded(
            "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
            "generate_content_free_tier_requests",
            250,
            max(1.0, reset - time.time()),
        )

    def error_body(self, fail: Fail) -> Any:
        return error_document(fail)

    def session_of(self, headers: dict[str, str], body: Any) -> str | None:
        if not isinstance(body, dict) or not body.get("contents") or _routing(body):
            return None
        first = body["contents"][0]
        prompt = [
            p
            for p in first.get("parts", [])
            if not str(p.get("text", "")).startswith("<session_context>")
        ]
        key = json.dumps([_workspace(json.dumps(first)), prompt], sort_keys=True)
        return hashlib.sha1(key.encode()).hexdigest()[:16]

    def route(self, http: Handler, request: Request) -> None:
        match = _PATH_RE.match(request.path)
        if match is None or request.method != "POST" or not isinstance(request.body, dict):
            http.send_json(404, error_document(Fail(404, "NOT_FOUND", f"no route {request.path}")))
            return
        model, method = match.groups()
        body = request.body
        if _routing(body):
            http.send_json(200, _response(_router_choice(), model))
            return
        conversation = json.dumps(body.get("contents", []))
        step = self.next_step(conversation)
        request.answer = step
        if isinstance(step, Fail):
            http.send_fail(step)
            return
        part, tokens_in, tokens_out = _turn(step, _workspace(conversation))
        if method == "streamGenerateContent":
            # the content, then an empty part that carries the finish reason and the usage
            last = _response({"text": ""}, model, tokens_in, tokens_out)
            first = {
                "candidates": [{"content": {"role": "model", "parts": [part]}, "index": 0}],
                "modelVersion": model,
                "responseId": last["responseId"],
            }
            http.send_sse([(None, first), (None, last)], step.headers)
        else:
            http.send_json(200, _response(part, model, tokens_in, tokens_out), step.headers)


def _workspace(conversation: str) -> str:
    match = _WORKSPACE_RE.search(conversation)
    return match.group(1) if match else "."


def _routing(body: dict[str, Any]) -> bool:
    """Whether a request is the model router's question (a JSON answer wanted), not a turn of the session."""
    return "responseJsonSchema" in (body.get("generationConfig") or {})


def _router_choice() -> dict[str, Any]:
    return {"text": json.dumps({"complexity_reasoning": "a simple task", "complexity_score": 1})}


def _response(
    part: dict[str, Any], model: str, tokens_in: int = 100, tokens_out: int = 20
) -> dict[str, Any]:
    """A complete GenerateContentResponse holding one part."""
    return {
        "candidates": [
            {"content": {"role": "model", "parts": [part]}, "finishReason": "STOP", "index": 0}
        ],
        "usageMetadata": {
            "promptTokenCount": tokens_in,
            "candidatesTokenCount": tokens_out,
            "totalTokenCount": tokens_in + tokens_out,
        },
        "modelVersion": model,
        "responseId": f"stub{next(_ids):08d}",
    }


def _turn(step: Reply | WriteFile, cwd: str) -> tuple[dict[str, Any], int, int]:
    """The part the model answers `step` with (text, or a `write_file` call), and the tokens in and out."""
    if isinstance(step, WriteFile):
        path = step.path if step.path.startswith("/") else f"{cwd}/{step.path}"
        return (
            {
                "functionCall": {
                    "name": "write_file",
                    "args": {"file_path": path, "content": step.content},
                }
            },
            100,
            20,
        )
    return {"text": step.text}, step.tokens_in, step.tokens_out
