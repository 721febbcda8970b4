"""What an agent is doing, read from its output: one line for `watch`, the conversation for `logs`
and the dashboard (pure rendering, shared by orchctl and orchd: the daemon never imports orchctl).

The agents' streams are read by `orchd.streams`, the same parsers orchd reads them
with live: `describe` turns one event into short lines of text; `Conversation`
renders a whole stream with it and passes every other line through unchanged;
`latest_activity` is the last thing an attempt did, from the tail of its log.
"""

from __future__ import annotations

import os

from orchd.streams import describe, parse
from orchd.streams.base import one_line, tool_call

TAIL_BYTES = 16 << 10  # how much of a log `latest_activity` reads


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


__all__ = ["Conversation", "describe", "latest_activity", "one_line", "parse", "tool_call"]
