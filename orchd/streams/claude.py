"""Claude Code's stream-json (`claude -p --output-format stream-json --verbose`); Cursor's and
Amp's streams share its shape.

Events: `system` (`init`; `api_retry` while the CLI retries a failed API request:
`attempt`, `max_retries`, `retry_delay_ms`, `error_status`, `error` = its
category), `assistant` / `user` messages (an API error the CLI gave up on is a
`<synthetic>` `assistant` message with `is_api_error_message`, `error`,
`api_error_status` and, for a usage limit, `api_error: "usage_limit_reached"`),
`rate_limit_event` (`rate_limit_info.status` is `rejected` with `resetsAt` when a
subscription's usage limit is reached, `allowed_warning` near it), and one final
`result` (`total_cost_usd`, `usage`). What Claude Code 2.1.332 does with each
error, retries and waits included, is in docs/providers.md.
"""

from __future__ import annotations

from orchd.streams.base import (
    AUTH,
    BILLING,
    INVALID,
    MODEL,
    OVERLOAD,
    RATE_LIMIT,
    RESULT_CHARS,
    USAGE_LIMIT,
    ApiError,
    Limit,
    Signal,
    StreamParser,
    number,
    one_line,
    status_category,
    text_of,
    tool_call,
    usage_text,
)

# Claude Code's error categories (`error` of an api_retry event or an API error message)
CATEGORIES = {
    "authentication_failed": AUTH,
    "oauth_org_not_allowed": AUTH,
    "billing_error": BILLING,
    "invalid_request": INVALID,
    "model_not_found": MODEL,
    "rate_limit": RATE_LIMIT,
    "server_error": OVERLOAD,
    "overloaded": OVERLOAD,
}
_INPUTS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


def category(error: object, status: object) -> str:
    """The category of a Claude Code error, by its name, else its HTTP status."""
    if status == 529:
        return OVERLOAD
    named = CATEGORIES.get(str(error or ""))
    return named or status_category(status if isinstance(status, int) else None)


def describe(event: dict, tools: dict[str, str]) -> list[str] | None:
    """Readable lines for one event of the Claude family, or None when it is not one."""
    kind = event.get("type")
    if kind == "system":
        if event.get("subtype") == "init":
            return [f"── session {event.get('session_id', '?')} ({event.get('model', '?')})"]
        if event.get("subtype") == "api_retry":
            status = event.get("error_status")
            return [
                f"! API error {status or ''} {event.get('error', '')}: retry "
                f"{event.get('attempt', '?')}/{event.get('max_retries', '?')}".replace("  ", " ")
            ]
        return []
    if kind in ("assistant", "user"):
        lines = []
        for part in (event.get("message") or {}).get("content") or []:
            if not isinstance(part, dict):
                continue
            if part.get("type") == "text" and part.get("text", "").strip():
                text = part["text"].strip()
                lines.append(text if kind == "assistant" else f"» {one_line(text, RESULT_CHARS)}")
            elif part.get("type") == "tool_use":
                tools[part.get("id", "")] = part.get("name", "?")
                lines.append(tool_call(part.get("name", "?"), part.get("input")))
            elif part.get("type") == "tool_result":
                mark = "✗" if part.get("is_error") else "←"
                lines.append(f"  {mark} {one_line(text_of(part.get('content')), RESULT_CHARS)}")
        return lines
    if kind == "result":
        usage = event.get("usage") or {}
        facts = [
            f"${event['total_cost_usd']:.4f}"
            if isinstance(event.get("total_cost_usd"), (int, float))
            else "",
            usage_text(usage.get("input_tokens"), usage.get("output_tokens")),
            f"{event['num_turns']} turns" if event.get("num_turns") is not None else "",
        ]
        tail = ", ".join(f for f in facts if f)
        mark = "✗ error" if event.get("is_error") else "✓ result"
        text = one_line(event.get("result") or event.get("subtype", ""), RESULT_CHARS)
        return [f"{mark}: {text}" + (f" ({tail})" if tail else "")]
    if kind == "rate_limit_event":
        info = event.get("rate_limit_info") or {}
        return [f"! rate limit {info.get('status', '')} ({info.get('rateLimitType', '')})"]
    if kind == "tool_call" and isinstance(event.get("tool_call"), dict):  # Cursor
        name, call = next(iter(event["tool_call"].items()), ("tool", {}))
        call = call if isinstance(call, dict) else {}
        if event.get("subtype") == "started":
            return [tool_call(name.removesuffix("ToolCall"), call.get("args"))]
        result = call.get("result") or {}
        done = result.get("success") or result.get("error") or result
        shown = done.get("content", done.get("message", "")) if isinstance(done, dict) else done
        return [f"  {'✗' if 'error' in result else '←'} {one_line(text_of(shown), RESULT_CHARS)}"]
    return None


class ClaudeStream(StreamParser):
    """Signals of a Claude-family stream: API errors and retries, usage limits, tokens, cost."""

    describe = staticmethod(describe)
    answers = True

    def __init__(self) -> None:
        super().__init__()
        self._messages: dict[str, tuple[int, int]] = {}  # message id -> its (input, output) tokens

    def on_event(self, event: dict) -> list[Signal]:
        kind = event.get("type")
        if event.get("session_id"):
            self.session_id = str(event["session_id"])
        if kind == "system" and event.get("subtype") == "api_retry":
            delay = number(event.get("retry_delay_ms"))
            status = event.get("error_status")
            return [
                ApiError(
                    category(event.get("error"), status),
                    status=status if isinstance(status, int) else None,
                    message=str(event.get("error") or ""),
                    retrying=True,
                    attempt=event.get("attempt") if isinstance(event.get("attempt"), int) else None,
                    max_retries=event.get("max_retries")
                    if isinstance(event.get("max_retries"), int)
                    else None,
                    retry_in=delay / 1000 if delay is not None else None,
                )
            ]
        if kind == "rate_limit_event":
            info = event.get("rate_limit_info") or {}
            if isinstance(info, dict) and info.get("status") == "rejected":
                reset = number(info.get("resetsAt"))
                why = f"{info.get('rateLimitType') or 'usage'} limit reached"
                return [Limit(reset, message=why)]
            return []
        if kind == "assistant":
            return self._assistant(event)
        if kind == "result":
            self._result(event)
        return []

    def _assistant(self, event: dict) -> list[Signal]:
        message = event.get("message") or {}
        if event.get("is_api_error_message") or event.get("error"):
            text = text_of([p for p in message.get("content") or [] if isinstance(p, dict)])
            status = event.get("api_error_status")
            limited = event.get("api_error") == "usage_limit_reached"  # its Limit came before
            return [
                ApiError(
                    USAGE_LIMIT if limited else category(event.get("error"), status),
                    status=status if isinstance(status, int) else None,
                    message=one_line(text or str(event.get("error") or ""), 500),
                )
            ]
        usage = message.get("usage")
        if isinstance(usage, dict) and message.get("id"):  # one API response (repeated per part)
            used_in = sum(int(number(usage.get(k)) or 0) for k in _INPUTS)
            self._messages[str(message["id"])] = (
                used_in,
                int(number(usage.get("output_tokens")) or 0),
            )
            self.tokens_in = sum(i for i, _ in self._messages.values())
            self.tokens_out = sum(o for _, o in self._messages.values())
        return [] if message.get("model") == "<synthetic>" else self.answer()

    def _result(self, event: dict) -> None:
        cost = number(event.get("total_cost_usd"))
        if cost is not None:
            self.cost_usd = cost
        usage = event.get("usage")
        if isinstance(usage, dict) and usage:
            self.tokens_in = sum(int(number(usage.get(k)) or 0) for k in _INPUTS)
            self.tokens_out = int(number(usage.get("output_tokens")) or 0)
