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

Errors take Google's shape, `{"error": {"code", "message", "status", "details"}}`.
Gemini CLI retries a 429 or a 5xx itself for minutes, unless it reads the
quota as exhausted for good (a message with `limit: 0`, a wait over five
minutes, a daily quota): the stub's rate limit says `limit: 0`, so that the
error reaches orch at once, as it does when Gemini CLI's own retries run out.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
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


class GoogleStub(StubServer):
    """Serves the Gemini API's generateContent and streamGenerateContent from the scripted steps."""

    rate_limited = Fail(
        429,
        "RESOURCE_EXHAUSTED",
        "Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_requests, "
        "limit: 0, model: gemini-2.5-flash",
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
            http.send_json(step.status, error_document(step), step.headers)
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
            http.send_sse([(None, first), (None, last)])
        else:
            http.send_json(200, _response(part, model, tokens_in, tokens_out))


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
