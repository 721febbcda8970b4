"""Gemini CLI's stream-json: `init`, `message`, `tool_use`, `tool_result`, `error`, `result`."""

from __future__ import annotations

from orchd.streams.base import (
    RESULT_CHARS,
    ApiError,
    Signal,
    StreamParser,
    failure_kind,
    number,
    one_line,
    text_of,
    tool_call,
    usage_text,
)


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


class GeminiStream(StreamParser):
    """Signals of a Gemini stream: errors, and tokens from the final stats."""

    describe = staticmethod(describe)

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
                message = str(error["message"])
                return [ApiError(failure_kind(message) or "", message=one_line(message, 500))]
        elif kind == "error":
            message = str(event.get("message") or "")
            retrying = event.get("severity") == "warning"
            return [
                ApiError(
                    failure_kind(message) or "", message=one_line(message, 500), retrying=retrying
                )
            ]
        return []
