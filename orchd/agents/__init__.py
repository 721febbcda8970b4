"""Agent adapters: one module per agent CLI; the shared part lives in `base`."""

from __future__ import annotations

from orchd.agents.aider import AiderAdapter
from orchd.agents.amp import AmpAdapter
from orchd.agents.base import AgentAdapter
from orchd.agents.claude import ClaudeAdapter
from orchd.agents.codex import CodexAdapter
from orchd.agents.command import CommandAdapter
from orchd.agents.copilot import CopilotAdapter
from orchd.agents.cursor import CursorAdapter
from orchd.agents.gemini import GeminiAdapter
from orchd.agents.opencode import OpenCodeAdapter

ADAPTERS: dict[str, AgentAdapter] = {
    "claude": ClaudeAdapter(),
    "codex": CodexAdapter(),
    "gemini": GeminiAdapter(),
    "opencode": OpenCodeAdapter(),
    "cursor": CursorAdapter(),
    "amp": AmpAdapter(),
    "aider": AiderAdapter(),
    "copilot": CopilotAdapter(),
    "command": CommandAdapter(),
}


def adapter_for(agent: str) -> AgentAdapter | None:
    """The adapter of an agent name, or None when this version has none."""
    return ADAPTERS.get(agent)
