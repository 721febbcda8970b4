"""One incremental parser per agent stream, shared by orchd (live signals) and orchctl (views)."""

from __future__ import annotations

from orchd.streams import claude, codex, gemini, others
from orchd.streams.base import (
    CATEGORIES,
    Activity,
    Answered,
    ApiError,
    Limit,
    Signal,
    Spend,
    StreamParser,
    one_line,
    parse,
)

PARSERS: dict[str, type[StreamParser]] = {
    "claude": claude.ClaudeStream,
    "cursor": claude.ClaudeStream,
    "amp": claude.ClaudeStream,
    "codex": codex.CodexStream,
    "gemini": gemini.GeminiStream,
    "opencode": others.OpenCodeStream,
    "copilot": others.CopilotStream,
    "aider": others.TextStream,
    "command": others.TextStream,
}


def parser_for(agent: str) -> StreamParser:
    """A new parser for one attempt of `agent`'s output."""
    return PARSERS.get(agent, others.TextStream)()


def tells_answers(agent: str) -> bool:
    """Whether `agent`'s stream says when its provider first answers (a provider's limit starts
    low and grows with the answers only then; else it starts at the caps)."""
    return PARSERS.get(agent, others.TextStream).answers


def describe(event: dict, tools: dict[str, str] | None = None) -> list[str] | None:
    """Readable lines for one JSON event of a known agent, told by its shape; None when it is none."""
    tools = {} if tools is None else tools
    kind = str(event.get("type", ""))
    if "part" in event or "sessionID" in event:
        return others.describe_opencode(event, tools)
    if ("data" in event and "." in kind) or (kind == "result" and "exitCode" in event):
        return others.describe_copilot(event, tools)
    if kind.startswith(("thread.", "turn.", "item.")) or (
        kind == "error" and "severity" not in event
    ):
        return codex.describe(event, tools)
    if kind in ("init", "message", "tool_use", "tool_result", "error") or (
        kind == "result" and "stats" in event
    ):
        return gemini.describe(event, tools)
    return claude.describe(event, tools)


__all__ = [
    "CATEGORIES",
    "Activity",
    "Answered",
    "ApiError",
    "Limit",
    "Signal",
    "Spend",
    "StreamParser",
    "describe",
    "one_line",
    "parse",
    "parser_for",
    "tells_answers",
]
