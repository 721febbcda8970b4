"""Gemini CLI's stream-json: `init`, `message`, `tool_use`, `tool_result`, `error`, `result`.

Gemini CLI 0.61 says nothing in JSON while it retries: its retries are lines of
text on stderr (which orch's log holds too), `Attempt 3 failed with status 503.
Retrying with backoff...` or, when the API said when to come back, `Attempt 1
failed: You exceeded your current quota, ...` over a few lines ending `...
Retrying after 5647ms...`. What it gave up on is the final `result`'s
`error.message`: a daily quota ("exhausted your daily quota") resets at midnight
Pacific time; a named wait ("Please retry in 3600s") is when to come back. Google
words a per-minute quota as "check your plan and billing details": that is a
rate limit, not billing. See docs/providers.md.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable
from zoneinfo import ZoneInfo

import msgspec

from orchd.streams.base import (
    PARK_AFTER,
    RATE_LIMIT,
    RESULT_CHARS,
    USAGE_LIMIT,
    ApiError,
    Limit,
    Signal,
    StreamParser,
    failure_kind,
    named_wait,
    number,
    one_line,
    status_category,
    text_of,
    tool_call,
    usage_text,
)

QUOTA_TZ = ZoneInfo("America/Los_Angeles")  # Gemini API daily quotas reset at midnight Pacific time
_QUOTA_RE = re.compile(
    r"exceeded your current quota|quota exceeded for metric|exhausted your \w* ?quota|"
    r"RESOURCE_EXHAUSTED|resource has been exhausted",
    re.I,
)
DAILY_QUOTA = "exhausted your daily quota"
_BACKOFF_RE = re.compile(
    r"^Attempt (\d+) failed with status (\d{3})\. Retrying with backoff\.\.\.(.*)"
)
_FAILED_RE = re.compile(r"^Attempt (\d+) failed: (.*)")
_RETRYING_AFTER_RE = re.compile(r"Retrying after (\d+)ms\.\.\.$")
_MAX_ATTEMPTS = "Max attempts reached"


def next_quota_reset(now: dt.datetime | None = None) -> float:
    """The unix time of the next midnight in Pacific time, when Gemini API daily quotas reset."""
    local = (now or dt.datetime.now(dt.UTC)).astimezone(QUOTA_TZ)
    midnight = dt.datetime.combine(local.date() + dt.timedelta(days=1), dt.time(), QUOTA_TZ)
    return midnight.timestamp()


def describe(event: dict, tools: dict[str, str]) -> list[str] | None:
    """Readable lines for one Gemini event, or None when it is not one."""
    kind = event.get("type")
    if kind == "init":
        return [f"── session {event.get('session_id', '?')} ({event.get('model', '?')})"]
    if kind == "message":
        if event.get("role") != "assistant":
            return [f"» {one_line(str(event.get('content', '')), RESULT_CHARS)}"]
        return [str(event.get("content", ""))]
    if kind == "tool_use":
        tools[event.get("tool_id", "")] = event.get("tool_name", "?")
        return [tool_call(event.get("tool_name", "?"), event.get("parameters"))]
    if kind == "tool_result":
        error = event.get("error")
        if error:
            message = error.get("message", "") if isinstance(error, dict) else error
            return [f"  ✗ {one_line(message, RESULT_CHARS)}"]
        return [f"  ← {one_line(text_of(event.get('output')), RESULT_CHARS)}"]
    if kind == "error":
        return [f"! {event.get('severity', 'error')}: {event.get('message', '')}"]
    if kind == "result":
        stats = event.get("stats") or {}
        usage = usage_text(stats.get("input_tokens"), stats.get("output_tokens"))
        error = event.get("error") or {}
        why = (
            f": {one_line(error.get('message', ''), RESULT_CHARS)}"
            if isinstance(error, dict) and error
            else ""
        )
        return [
            f"{'✓' if event.get('status') == 'success' else '✗'} result: {event.get('status', '?')}{why}"
            + (f" ({usage})" if usage else "")
        ]
    return None


def category(text: str) -> str:
    """The category of a Gemini error text: Google's quota words are a rate limit, whatever
    else they say ("check your plan and billing details")."""
    if _QUOTA_RE.search(text):
        return RATE_LIMIT
    return failure_kind(text) or ""


class GeminiStream(StreamParser):
    """Signals of a Gemini stream: its retries (told in text), quotas, errors, tokens."""

    describe = staticmethod(describe)
    answers = True

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock)
        self._failed: tuple[int, list[str]] | None = None  # an "Attempt N failed: ..." being told

    def on_event(self, event: dict) -> list[Signal]:
        kind = event.get("type")
        if kind == "init" and event.get("session_id"):
            self.session_id = str(event["session_id"])
        elif (kind == "message" and event.get("role") == "assistant") or kind == "tool_use":
            return self.answer()  # the model's output
        elif kind == "result":
            stats = event.get("stats") or {}
            if isinstance(stats, dict) and stats:
                self.tokens_in = int(number(stats.get("input_tokens")) or 0)
                self.tokens_out = int(number(stats.get("output_tokens")) or 0)
            error = event.get("error")
            if isinstance(error, dict) and error.get("message"):
                return self._gave_up(str(error["message"]))
        elif kind == "error":
            message = str(event.get("message") or "")
            retrying = event.get("severity") == "warning"
            return [ApiError(category(message), message=one_line(message, 500), retrying=retrying)]
        return []

    def on_text(self, text: str) -> list[Signal]:
        """Gemini CLI's retries, told on stderr."""
        super().on_text(text)
        if match := _BACKOFF_RE.match(text):
            status = int(match[2])
            why = one_line(match[3].strip() or f"status {status}", 500)
            error = ApiError(status_category(status), status, why, True, int(match[1]))
            return [error]
        if match := _FAILED_RE.match(text):
            self._failed = (int(match[1]), [match[2]])
        elif self._failed is not None and len(self._failed[1]) < 8:
            self._failed[1].append(text)
        else:
            self._failed = None
        if self._failed is None:
            return []
        attempt, lines = self._failed
        if text.endswith(_MAX_ATTEMPTS):  # what it gave up on comes in the result
            self._failed = None
            return []
        if not (match := _RETRYING_AFTER_RE.search(text)):
            return []
        self._failed = None
        why = " ".join(lines)
        retry_in = int(match[1]) / 1000
        return [ApiError(category(why), None, one_line(why, 500), True, attempt, None, retry_in)]

    def _gave_up(self, message: str) -> list[Signal]:
        """The error Gemini CLI ended on; a quota it will not wait for holds the provider until it
        resets (midnight Pacific time for a daily one, else the wait the API named)."""
        error = ApiError(category(message), message=one_line(message, 500))
        now = self.clock()
        if DAILY_QUOTA in message:
            reset = next_quota_reset(dt.datetime.fromtimestamp(now, dt.UTC))
            return [ApiError(USAGE_LIMIT, message=error.message), Limit(reset, "daily quota")]
        wait = named_wait(message)
        if error.category == RATE_LIMIT and wait is not None and wait >= PARK_AFTER:
            return [error, Limit(now + wait, f"quota: retry in {wait:g}s")]
        if wait is not None:
            return [msgspec.structs.replace(error, retry_in=wait)]
        return [error]
