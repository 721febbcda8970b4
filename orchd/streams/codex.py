"""Codex's `exec --json` stream: `thread.started`, `turn.*`, `item.*`, and `error` events.

Errors carry only a message, so they are classified by their words and the HTTP
status they quote. What Codex 0.171 prints (docs/providers.md): while it retries
it says `Reconnecting... N/5 (unexpected status 401 Unauthorized: ...)` or
`(exceeded retry limit, last status: 429 Too Many Requests)` in an `error`
event; then the same error once more without the prefix, and `turn.failed`
repeats it. A ChatGPT plan's usage limit is one `error`: "You've hit your usage
limit. ... try again at Mar 17th, 2030 5:46 PM." (local time; no date when it is
today), and Codex gives up at once.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable

from orchd.streams.base import (
    RESULT_CHARS,
    USAGE_LIMIT,
    ApiError,
    Limit,
    Signal,
    StreamParser,
    failure_kind,
    number,
    one_line,
    status_category,
    tool_call,
    usage_text,
)

_AT_RE = re.compile(
    r"try again at (?:(?P<month>[A-Z][a-z]{2}) (?P<day>\d{1,2})(?:st|nd|rd|th)?, (?P<year>\d{4}) )?"
    r"(?P<hour>\d{1,2}):(?P<minute>\d{2}) ?(?P<ampm>[AP]M)",
    re.I,
)
_RETRYING_RE = re.compile(r"^Reconnecting\.\.\. (\d+)/(\d+) \((.*)\)$", re.S)
_STATUS_RE = re.compile(r"\bstatus:? (\d{3})\b")
USAGE_LIMIT_WORDS = "hit your usage limit"


def describe(event: dict, tools: dict[str, str]) -> list[str] | None:
    """Readable lines for one Codex event, or None when it is not one."""
    kind = event.get("type", "")
    if kind == "thread.started":
        return [f"── thread {event.get('thread_id', '?')}"]
    if kind in ("turn.started", "item.updated"):
        return []
    if kind == "turn.completed":
        usage = event.get("usage") or {}
        return [
            f"✓ turn completed ({usage_text(usage.get('input_tokens'), usage.get('output_tokens'))})"
        ]
    if kind == "turn.failed":
        return [f"✗ turn failed: {(event.get('error') or {}).get('message', '')}"]
    if kind == "error":
        return [f"! {event.get('message', '')}"]
    if kind not in ("item.started", "item.completed"):
        return None
    item = event.get("item") or {}
    itype = item.get("type")
    if kind == "item.started":
        return [tool_call("$", item.get("command"))] if itype == "command_execution" else []
    if itype == "agent_message":
        return [item.get("text", "").strip()]
    if itype == "reasoning":
        return [f"(thinking) {one_line(item.get('text', ''), RESULT_CHARS)}"]
    if itype == "command_execution":
        output = one_line(item.get("aggregated_output", ""), RESULT_CHARS)
        return [f"  ← exit {item.get('exit_code')}" + (f": {output}" if output else "")]
    if itype == "file_change":
        changes = ", ".join(
            f"{c.get('kind', '?')} {c.get('path', '?')}" for c in item.get("changes") or []
        )
        return [f"→ edit {changes}"]
    if itype == "mcp_tool_call":
        return [
            tool_call(f"{item.get('server', '')}.{item.get('tool', '')}", item.get("arguments"))
        ]
    if itype == "web_search":
        return [tool_call("search", item.get("query"))]
    if itype == "error":
        return [f"! {item.get('message', '')}"]
    return []


class CodexStream(StreamParser):
    """Signals of a Codex stream: errors (retried ones say "Reconnecting"), tokens per turn."""

    describe = staticmethod(describe)
    answers = True

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock)
        self._turns: list[tuple[int, int]] = []  # (input, output) tokens of each completed turn
        self._said = ""  # the last error message

    def on_event(self, event: dict) -> list[Signal]:
        kind = event.get("type")
        if kind == "thread.started" and event.get("thread_id"):
            self.session_id = str(event["thread_id"])
        elif kind in ("item.started", "item.completed") and (event.get("item") or {}).get(
            "type"
        ) not in ("error", None):
            return self.answer()  # the model's output: a message, a command, an edit
        elif kind == "turn.completed":
            usage = event.get("usage") or {}
            used_in = int(number(usage.get("input_tokens")) or 0)
            self._turns.append((used_in, int(number(usage.get("output_tokens")) or 0)))
            self.tokens_in = sum(i for i, _ in self._turns)
            self.tokens_out = sum(o for _, o in self._turns)
            return self.answer()
        elif kind in ("error", "turn.failed"):
            error = event.get("error")
            message = str(
                (error.get("message") if isinstance(error, dict) else None)
                or event.get("message")
                or ""
            )
            if kind == "turn.failed" and message == self._said:
                return []  # the error it has just reported, repeated
            self._said = message
            return self._error(message)
        return []

    def _error(self, message: str) -> list[Signal]:
        """An error message: a retry under way ("Reconnecting... N/M (why)"), a usage limit with
        its reset time, or the error Codex gave up on."""
        attempt = retries = None
        if match := _RETRYING_RE.match(message):
            attempt, retries, why = int(match[1]), int(match[2]), match[3]
        else:
            why = message
        status_match = _STATUS_RE.search(why)
        status = int(status_match[1]) if status_match else None
        if USAGE_LIMIT_WORDS in why:
            now = dt.datetime.fromtimestamp(self.clock())  # Codex says the local time of day
            limit = Limit(reset_time(why, now), message=one_line(why, 500))
            return [ApiError(USAGE_LIMIT, status, one_line(why, 500)), limit]
        category = failure_kind(why) or status_category(status)
        return [
            ApiError(
                category,
                status=status,
                message=one_line(why, 500),
                retrying=attempt is not None,
                attempt=attempt,
                max_retries=retries,
            )
        ]


def reset_time(message: str, now: dt.datetime | None = None) -> float | None:
    """When a usage limit resets, from Codex's "… try again at 9:07 AM." (local time; with a date
    when not today): the end of that minute, as Codex cuts the seconds off (a reset at 9:07:40
    says 9:07)."""
    match = _AT_RE.search(message)
    if not match:
        return None
    now = (
        now or dt.datetime.now()
    )  # naive local time: .timestamp() applies the DST rules of the reset's date
    hour = int(match["hour"]) % 12 + (12 if match["ampm"].upper() == "PM" else 0)
    if match["year"]:
        month = dt.datetime.strptime(match["month"], "%b").month
        at = now.replace(
            year=int(match["year"]),
            month=month,
            day=int(match["day"]),
            hour=hour,
            minute=int(match["minute"]),
            second=0,
            microsecond=0,
        )
    else:
        at = now.replace(hour=hour, minute=int(match["minute"]), second=0, microsecond=0)
        if at < now - dt.timedelta(minutes=1):  # the time has passed today: it means tomorrow
            at += dt.timedelta(days=1)
    return at.timestamp() + 60
