"""Adapters on recorded output: an attempt's log written from a fixture, then classified."""

from __future__ import annotations

from pathlib import Path

from orchd.agents import adapter_for
from orchd.agents.base import Exit, Outcome
from orchd.plan import TaskSpec

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "agents"


class Recorded:
    """One agent's fixtures, and its adapter's verdict on them for `task`."""

    def __init__(self, task: TaskSpec) -> None:
        self.task, self.adapter = task, adapter_for(task.agent)
        self.fixtures = FIXTURES / task.agent

    def fixture(self, name: str) -> str:
        """The text of `NAME.jsonl` (or of NAME itself when it has a suffix)."""
        return (self.fixtures / (name if "." in name else f"{name}.jsonl")).read_text()

    def classify(
        self,
        tmp_path: Path,
        output: str,
        exit_code: int | None = 1,
        signal: int | None = None,
        task: TaskSpec | None = None,
    ) -> Outcome:
        """The outcome of an attempt that printed `output` and ended with `exit_code` (or `signal`)."""
        log = tmp_path / "attempt.log"
        log.write_text(output)
        return self.adapter.classify(task or self.task, Exit(exit_code, signal, str(log)))
