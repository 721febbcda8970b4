"""End-to-end fixtures: a provider stub on loopback and a real orchd whose environment points the CLI at it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Daemon, write_plan
from tests.e2e import clis
from tests.e2e.stubs.anthropic import AnthropicStub
from tests.e2e.stubs.base import StubServer
from tests.e2e.stubs.google import GoogleStub
from tests.e2e.stubs.openai import OpenAIStub
from tests.integration.test_worktree import make_repo

STUBS: dict[str, type[StubServer]] = {
    "claude": AnthropicStub,
    "codex": OpenAIStub,
    "gemini": GoogleStub,
}
ENVS: dict[str, Callable[..., dict[str, str]]] = {
    "claude": clis.claude_env,
    "codex": clis.codex_env,
    "gemini": clis.gemini_env,
}


class AgentRig:
    """One agent CLI, its stub and a real orchd whose environment (keys, base URL, PATH) points the CLI at the stub."""

    def __init__(
        self, agent: str, stub: StubServer, daemon: Daemon, workdir: Path, tmp_path: Path
    ) -> None:
        self.agent, self.stub, self.daemon, self.workdir, self.tmp_path = (
            agent,
            stub,
            daemon,
            workdir,
            tmp_path,
        )

    def submit(
        self,
        tasks: list[dict[str, Any]],
        concurrency: int = 4,
        wait: bool = False,
        plan: dict[str, Any] | None = None,
        **defaults: Any,
    ) -> dict[str, Any]:
        """Submit a plan of `tasks` (and with `wait`, wait for the run to end); what `submit --json`
        printed. `plan`: more top-level fields; `defaults`: more [defaults]."""
        plan = write_plan(
            self.tmp_path / "plan.json",
            {
                "name": f"e2e-{self.agent}",
                "workdir": str(self.workdir),
                "concurrency": concurrency,
                "isolation": "worktree",  # each session in its own worktree and branch of the workdir's repository
                "defaults": {
                    "agent": self.agent,
                    "max_retries": 2,
                    "timeout": "90s",
                    "backoff": {"initial": "0.1s", "factor": 1.0, "max": "0.2s"},
                    **defaults,
                },
                "tasks": tasks,
                **(plan or {}),
            },
        )
        done = self.daemon.orchctl(
            "submit", str(plan), *(["--wait"] if wait else []), "--json", timeout=240
        )
        assert done.returncode in (0, 1), f"{done.stdout}\n{done.stderr}\n{self.daemon.log()}"
        return json.loads(done.stdout)

    def run(
        self, tasks: list[dict[str, Any]], concurrency: int = 4, **defaults: Any
    ) -> dict[str, Any]:
        """Submit a plan of `tasks`, wait for the run to end; `orchctl results RUN --json`, tasks keyed by id."""
        run_id = self.submit(tasks, concurrency, wait=True, **defaults)["summary"]["run_id"]
        results = self.daemon.orchctl("results", run_id, "--json", check=True)
        view = json.loads(results.stdout)
        view["by_id"] = {task["id"]: task for task in view["tasks"]}
        return view

    def log(self, run_id: str, task: str) -> str:
        """The output of a task's last attempt (for failure messages)."""
        return self.daemon.orchctl("logs", run_id, task).stdout[-3000:]


@pytest.fixture
def rig(
    tmp_path: Path, make_daemon: Callable[..., Daemon], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., AgentRig]]:
    """Start an agent's stub and a real orchd whose environment (PATH, key, base URL) points the CLI at it.

    `rig("claude", hold=1.0, env={...})`: `hold` makes the stub hold each model request until
    another session is in flight too (or the hold passes); `env` adds to or replaces orchd's environment;
    `own_retries`: the CLI retries errors itself, as users run it (else Claude Code and Codex do not).
    """
    stubs: list[StubServer] = []

    def make(
        agent: str,
        hold: float = 0.0,
        env: dict[str, str] | None = None,
        own_retries: bool = False,
        **config: Any,
    ) -> AgentRig:
        cli = clis.require_cli(agent)
        stub = STUBS[agent](hold=hold).__enter__()
        stubs.append(stub)
        retries = {"retries": None} if own_retries else {}
        for name, value in {
            **ENVS[agent](stub, tmp_path / "home", **retries),
            **(env or {}),
        }.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("PATH", clis.path_with(cli))
        workdir = make_repo(tmp_path / "work")
        return AgentRig(
            agent, stub, make_daemon(**{"max_sessions": 8, **config}), workdir, tmp_path
        )

    yield make
    for stub in stubs:
        stub.close()
