"""The `command` agent: any argv. Exit 0 is success; anything else is retried."""

from __future__ import annotations

from orchd.agents.base import RETRY, SUCCESS, Exit, Launch, Outcome, describe_exit, tail
from orchd.events import AgentReport, VerifyResult
from orchd.plan import TaskSpec


class CommandAdapter:
    """Runs `command` + `agent_args` as given."""

    name = "command"

    def launch(
        self,
        task: TaskSpec,
        attempt: int,
        resume: str | None = None,
        feedback: VerifyResult | None = None,
    ) -> Launch:
        return Launch(argv=[*task.command, *task.agent_args], cwd=task.cwd)

    def classify(self, task: TaskSpec, exit: Exit) -> Outcome:
        if exit.exit_code == 0:
            lines = tail(exit, 1024).strip().splitlines()
            return Outcome(SUCCESS, report=AgentReport(result=lines[-1][:500] if lines else ""))
        return Outcome(RETRY, reason=describe_exit(exit))
