"""The streams of OpenCode (`run --format json`) and Copilot CLI (JSON), and plain text (Aider, commands)."""

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


def describe_opencode(event: dict, tools: dict[str, str]) -> list[str] | None:
    """OpenCode: parts of messages (`text`, `tool_use`, `step_finish`) and `error`."""
    kind, part = event.get("type"), event.get("part") or {}
    if kind == "text":
        return [str(part.get("text", "")).strip()]
    if kind == "tool_use":
        state = part.get("state") or {}
        lines = [tool_call(part.get("tool", "?"), state.get("input"))]
        if state.get("output") or state.get("error"):
            mark = "✗" if state.get("error") else "←"
            shown = text_of(state.get("output") or state.get("error"))
            lines.append(f"  {mark} {one_line(shown, RESULT_CHARS)}")
        return lines
    if kind == "step_finish":
        used = part.get("tokens") or {}
        facts = [
            f"${part['cost']:.4f}" if isinstance(part.get("cost"), (int, float)) else "",
            usage_text(used.get("input"), used.get("output")),
        ]
        return [f"✓ step finished ({', '.join(f for f in facts if f)})"]
    if kind == "error":
        error = event.get("error") or {}
        return [f"! {error.get('name', 'error')}: {(error.get('data') or {}).get('message', '')}"]
    return []


def describe_copilot(event: dict, tools: dict[str, str]) -> list[str] | None:
    """Copilot CLI: `assistant.message`, `tool.execution_*`, `session.error`, `result`."""
    kind, data = event.get("type", ""), event.get("data") or {}
    if kind == "assistant.message":
        lines = [str(data.get("content", "")).strip()]
        lines += [
            tool_call(r.get("name", "?"), r.get("arguments"))
            for r in data.get("toolRequests") or []
            if isinstance(r, dict)
        ]
        return lines
    if kind == "tool.execution_start":
        return [tool_call(data.get("toolName", "?"), data.get("arguments"))]
    if kind == "tool.execution_complete":
        result = data.get("result") or {}
        shown = result.get("content", result) if isinstance(result, dict) else result
        return [f"  ← {one_line(text_of(shown), RESULT_CHARS)}"]
    if kind in ("session.error", "session.warning"):
        return [f"! {data.get('message', '')}"]
    if kind == "result":
        code = event.get("exitCode")
        return [f"{'✓' if code == 0 else '✗'} result: exit {code}"]
    return []


class OpenCodeStream(StreamParser):
    """Signals of an OpenCode stream: cost and tokens per step (summed), errors."""

    describe = staticmethod(describe_opencode)
    answers = True

    def on_event(self, event: dict) -> list[Signal]:
        kind, part = event.get("type"), event.get("part") or {}
        if event.get("sessionID"):
            self.session_id = str(event["sessionID"])
        if kind in ("text", "tool_use"):
            return self.answer()
        if kind == "step_finish" and isinstance(part, dict):
            cost, used = number(part.get("cost")), part.get("tokens") or {}
            if cost is not None:
                self.cost_usd = (self.cost_usd or 0.0) + cost
            self.tokens_in = (self.tokens_in or 0) + int(number(used.get("input")) or 0)
            self.tokens_out = (self.tokens_out or 0) + int(number(used.get("output")) or 0)
        elif kind == "error":
            error = event.get("error") or {}
            message = str((error.get("data") or {}).get("message") or error.get("name") or "")
            return [ApiError(failure_kind(message) or "", message=one_line(message, 500))]
        return []


class CopilotStream(StreamParser):
    """Signals of a Copilot stream: its session errors."""

    describe = staticmethod(describe_copilot)
    answers = True

    def on_event(self, event: dict) -> list[Signal]:
        if event.get("type") in ("assistant.message", "assistant.message_delta"):
            return self.answer()
        if event.get("type") == "session.error":
            message = str((event.get("data") or {}).get("message") or "")
            return [ApiError(failure_kind(message) or "", message=one_line(message, 500))]
        return []


class TextStream(StreamParser):
    """Plain output (Aider, any command): the latest line is its activity; nothing to act on."""
