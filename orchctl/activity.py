"""What an agent is doing, read from its output: one line for `watch`, the conversation for `logs`.

Agents that stream JSON lines share one shape per family: Claude Code, Cursor and
Amp (`{"type": "assistant"|"user"|"result"|"system", ...}`), Codex `exec --json`
(`item.completed`, `turn.completed`, `turn.failed`, ...) and Gemini stream-json
(`message`, `tool_use`, `tool_result`, `result`, ...). `describe` turns one such
event into short lines of text; `Conversation` renders a whole stream with it and
passes every other line through unchanged; `latest_activity` is the last thing
an attempt did, from the tail of its log.
"""

from __future__ import annotations

import json
import os
from typing import Any

TAIL_BYTES = 16 << 10  # how much of a log `latest_activity` reads
RESULT_CHARS = 300  # a tool's output is cut to this in the conversation
# the argument that says most about a tool call, by the names agents give it
MAIN_ARGUMENTS = (
    "command",
    "cmd",
    "file_path",
    "path",
    "filePath",
    "absolute_path",
    "pattern",
    "query",
    "url",
    "description",
    "prompt",
    "paths",
    "args",
)


def one_line(text: str, limit: int = 200) -> str:
    """`text` on one line, cut to `limit` characters with an ellipsis."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def main_argument(arguments: Any) -> str:
    """The most telling argument of a tool call (its command, file, pattern…), as text."""
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return arguments
    if not isinstance(arguments, dict):
        return "" if arguments is None else str(arguments)
    for key in MAIN_ARGUMENTS:
        value = arguments.get(key)
        if value:
            return " ".join(map(str, value)) if isinstance(value, list) else str(value)
    return next((str(v) for v in arguments.values() if isinstance(v, str) and v), "")


def tool_call(name: str, arguments: Any) -> str:
    argument = main_argument(arguments)
    return f"→ {name} {argument}".rstrip()


def _text(content: Any) -> str:
    """The text of a tool result's content: a string, or a list of text parts."""
    if isinstance(content, list):
        return " ".join(
            _text(part.get("text", "") if isinstance(part, dict) else part) for part in content
        )
    return "" if content is None else str(content)


def _usage(tokens_in: Any, tokens_out: Any) -> str:
    return (
        f"{tokens_in} in / {tokens_out} out"
        if tokens_in is not None or tokens_out is not None
        else ""
    )


def _claude(event: dict, tools: dict[str, str]) -> list[str] | None:
    kind = event.get("type")
    if kind == "system":
        if event.get("subtype") == "init":
            return [f"── session {event.get('session_id', '?')} ({event.get('model', '?')})"]
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
                lines.append(f"  {mark} {one_line(_text(part.get('content')), RESULT_CHARS)}")
        return lines
    if kind == "result":
        usage = event.get("usage") or {}
        facts = [
            f"${event['total_cost_usd']:.4f}"
            if isinstance(event.get("total_cost_usd"), (int, float))
            else "",
            _usage(usage.get("input_tokens"), usage.get("output_tokens")),
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
        return [f"  {'✗' if 'error' in result else '←'} {one_line(_text(shown), RESULT_CHARS)}"]
    return None


def _codex(event: dict, tools: dict[str, str]) -> list[str] | None:
    kind = event.get("type", "")
    if kind == "thread.started":
        return [f"── thread {event.get('thread_id', '?')}"]
    if kind in ("turn.started", "item.updated"):
        return []
    if kind == "turn.completed":
        usage = event.get("usage") or {}
        return [
            f"✓ turn completed ({_usage(usage.get('input_tokens'), usage.get('output_tokens'))})"
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


def _gemini(event: dict, tools: dict[str, str]) -> list[str] | None:
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
            return [
                f"  ✗ {one_line(error.get('message', '') if isinstance(error, dict) else error, RESULT_CHARS)}"
            ]
        return [f"  ← {one_line(_text(event.get('output')), RESULT_CHARS)}"]
    if kind == "error":
        return [f"! {event.get('severity', 'error')}: {event.get('message', '')}"]
    if kind == "result":
        stats = event.get("stats") or {}
        usage = _usage(stats.get("input_tokens"), stats.get("output_tokens"))
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


def _opencode(event: dict, tools: dict[str, str]) -> list[str] | None:
    """OpenCode `run --format json`: parts of messages (`text`, `tool_use`, `step_finish`) and `error`."""
    kind, part = event.get("type"), event.get("part") or {}
    if kind == "text":
        return [str(part.get("text", "")).strip()]
    if kind == "tool_use":
        state = part.get("state") or {}
        lines = [tool_call(part.get("tool", "?"), state.get("input"))]
        if state.get("output") or state.get("error"):
            mark = "✗" if state.get("error") else "←"
            lines.append(
                f"  {mark} {one_line(_text(state.get('output') or state.get('error')), RESULT_CHARS)}"
            )
        return lines
    if kind == "step_finish":
        used = part.get("tokens") or {}
        facts = [
            f"${part['cost']:.4f}" if isinstance(part.get("cost"), (int, float)) else "",
            _usage(used.get("input"), used.get("output")),
        ]
        return [f"✓ step finished ({', '.join(f for f in facts if f)})"]
    if kind == "error":
        error = event.get("error") or {}
        return [f"! {error.get('name', 'error')}: {(error.get('data') or {}).get('message', '')}"]
    return []


def _copilot(event: dict, tools: dict[str, str]) -> list[str] | None:
    """Copilot CLI JSON: `assistant.message`, `tool.execution_*`, `session.error`, `result`."""
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
        return [
            f"  ← {one_line(_text(result.get('content', result) if isinstance(result, dict) else result), RESULT_CHARS)}"
        ]
    if kind in ("session.error", "session.warning"):
        return [f"! {data.get('message', '')}"]
    if kind == "result":
        code = event.get("exitCode")
        return [f"{'✓' if code == 0 else '✗'} result: exit {code}"]
    return []


def describe(event: dict, tools: dict[str, str] | None = None) -> list[str] | None:
    """Readable lines for one stream-json event of a known agent, or None when it is not one."""
    tools = {} if tools is None else tools
    kind = str(event.get("type", ""))
    if "part" in event or "sessionID" in event:
        return _opencode(event, tools)
    if ("data" in event and "." in kind) or (kind == "result" and "exitCode" in event):
        return _copilot(event, tools)
    if kind.startswith(("thread.", "turn.", "item.")) or (
        kind == "error" and "severity" not in event
    ):
        return _codex(event, tools)
    if kind in ("init", "message", "tool_use", "tool_result", "error") or (
        kind == "result" and "stats" in event
    ):
        return _gemini(event, tools)
    return _claude(event, tools)


def parse(line: bytes | str) -> dict | None:
    """The JSON object on `line`, or None."""
    line = line.strip()
    if line[:1] not in (b"{", "{"):
        return None
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) and isinstance(value.get("type"), str) else None


class Conversation:
    """Renders an agent's output stream readably, line by line; bytes that are not an event pass through."""

    def __init__(self) -> None:
        self.tools: dict[str, str] = {}
        self._partial = b""
        self._streaming = (
            False  # inside a run of text deltas (Gemini), which are joined, not one per line
        )

    def feed(self, chunk: bytes) -> bytes:
        """The rendering of the complete lines in `chunk` (and what was left of the last chunk)."""
        data = self._partial + chunk
        end = data.rfind(b"\n") + 1
        self._partial = data[end:]
        return b"".join(self.line(line) for line in data[:end].splitlines(keepends=True))

    def flush(self) -> bytes:
        """What is left: an unfinished last line, as it is."""
        rest, self._partial = self._partial, b""
        return self.line(rest) if rest else b""

    def line(self, line: bytes) -> bytes:
        event = parse(line)
        lines = describe(event, self.tools) if event is not None else None
        if lines is None or event is None:
            out = line
        elif event.get("type") == "message" and event.get("delta") and lines:
            out, self._streaming = lines[0].encode(), True
            return out
        else:
            out = "".join(f"{text}\n" for text in lines if text).encode()
        if self._streaming and out:
            self._streaming, out = False, b"\n" + out
        return out


def tail(log_path: str, limit: int = TAIL_BYTES) -> bytes:
    """The last `limit` bytes of a log file (empty when it is not there)."""
    try:
        with open(log_path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            f.seek(max(0, size - limit))
            return f.read(limit)
    except OSError:
        return b""


def latest_activity(log_path: str | None, limit: int = 200) -> str:
    """The last thing an attempt did: its last tool call, text or line of output, on one line."""
    if not log_path:
        return ""
    data = tail(log_path)
    lines = data.splitlines()
    if len(data) == TAIL_BYTES and lines:  # the first line is cut
        lines = lines[1:]
    if (
        lines and not data.endswith(b"\n") and lines[-1].lstrip().startswith(b"{")
    ):  # still being written
        lines = lines[:-1]
    tools: dict[str, str] = {}
    for line in reversed(lines):
        event = parse(line)
        if event is None:
            text = line.decode("utf-8", "replace").strip()
            if text:
                return one_line(text, limit)
            continue
        said = [t for t in describe(event, tools) or [] if t.strip()]
        if said:
            return one_line(said[-1], limit)
    return ""
