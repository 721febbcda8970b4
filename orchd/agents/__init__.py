"""Agent adapters: one module per agent CLI; the shared part lives in `base`."""

from __future__ import annotations

from orchd.agents.base import AgentAdapter
from orchd.agents.claude import ClaudeAdapter
from orchd.agents.codex import CodexAdapter
from orchd.agents.command import CommandAdapter

ADAPTERS: dict[str, AgentAdapter] = {
    "claude": ClaudeAdapter(),
    "codex": CodexAdapter(),
    "command": CommandAdapter(),
}


def adapter_for(agent: str) -> AgentAdapter | None:
    """The adapter of an agent name, or None when this version has none."""
    return ADAPTERS.get(agent)
