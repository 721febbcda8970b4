"""Codex's `exec --json` stream: `thread.started`, `turn.*`, `item.*`, and `error` events.

Errors carry only a message (Codex retries a failed stream itself and says
"Reconnecting... N/M" in an `error` event), so they are classified by their words.
"""

from __future__ import annotations

from orchd.streams.base import (
    RESULT_CHARS,
    ApiError,
    Signal,
    StreamParser,
    failure_kind,
    number,
    one_line,
    tool_call,
    usage_text,
)


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

    def __init__(self) -> None:
        super().__init__()
        self._turns: list[tuple[int, int]] = []  # (input, output) tokens of each completed turn

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
            retrying = kind == "error" and "reconnecting" in message.lower()
            return [
                ApiError(
                    failure_kind(message) or "", message=one_line(message, 500), retrying=retrying
                )
            ]
        return []
