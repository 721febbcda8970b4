"""What a run actor needs to launch an attempt: its session actor, its event, its log file.

An attempt of a task with a worktree or checks runs inside the attempt's own process
(orchd/attempt.py: prepare, the agent, verify); the next attempt after one whose checks failed is
told why (the adapter quotes the failing check in its prompt).

An attempt's log is created ahead of its spawn, while the launch commits (creating
a file on this disk can cost more than the spawn itself), and the next ready
task's log after each launch, off the path from an exit to the next spawn.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import msgspec
import pykka

from orchd import events as ev
from orchd import state as st
from orchd import workspace
from orchd.actors.context import Context
from orchd.actors.session import SessionActor
from orchd.agents import adapter_for
from orchd.agents.base import Launch
from orchd.attempt import Prep, Wrapper
from orchd.decide import VERIFY_FAILED
from orchd.events import VerifyResult
from orchd.executors.base import Process
from orchd.plan import TaskSpec


class Launcher:
    """Builds the sessions of one run's attempts, and creates their logs ahead."""

    def __init__(self, ctx: Context, run_id: str) -> None:
        self.ctx, self.run_id = ctx, run_id
        self.logs: list[Path] = []  # logs of attempts about to launch, to create while they commit
        self.made: set[Path] = set()  # logs created ahead, for the next ready task's attempt

    def launch(
        self, task: st.TaskState, n: int, spent: float | None = None
    ) -> tuple[pykka.ActorRef[Any], ev.AttemptLaunching]:
        """Attempt `n` of `task`: its session actor (to tell Start once the event is durable) and
        its AttemptLaunching. `spent`: what the task's earlier attempts spent."""
        ref, launch = self._start(task, n, None, 0.0, spent or 0.0)
        log_path = self.ctx.paths.attempt_log(self.run_id, task.spec.id, n)
        if log_path in self.made:
            self.made.discard(log_path)
        else:
            self.logs.append(log_path)
        return ref, ev.AttemptLaunching(
            self.run_id, task.spec.id, n, launch.argv, launch.cwd, str(log_path)
        )

    def session(
        self, task: st.TaskState, n: int, adopt: Process | None = None, elapsed: float = 0.0
    ) -> pykka.ActorRef[Any]:
        """The session actor of attempt `n` of `task` (with `adopt`: of its process, found after a
        restart)."""
        return self._start(task, n, adopt, elapsed, 0.0)[0]

    def adopt(
        self, task: st.TaskState, attempt: st.AttemptState
    ) -> tuple[pykka.ActorRef[Any], ev.AttemptAdopted] | None:
        """A session for an attempt that outlived the previous orchd, and the event that says so;
        None when nothing of it is left (no process, no exit status)."""
        log_path = Path(attempt.log_path)
        known = None
        if attempt.pid is not None:
            pgid = attempt.pgid or attempt.pid
            known = Process(attempt.pid, pgid, attempt.start_ticks, log_path=log_path)
        found = self.ctx.executor.find(self.run_id, task.spec.id, attempt.n, known, log_path)
        adapter = adapter_for(task.spec.agent)
        if found is None and getattr(adapter, "states_outcome", False) and log_path.exists():
            # no process, no status: its stream may still say how it went (the session reads it)
            found = Process(attempt.pid or 0, 0, attempt.start_ticks, log_path=log_path, ended=True)
        if found is None:
            return None
        started = attempt.started_at or attempt.launched_at
        ref = self.session(task, attempt.n, adopt=found, elapsed=time.time() - started)
        adopted = ev.AttemptAdopted(
            self.run_id,
            task.spec.id,
            attempt.n,
            found.pid,
            found.pgid,
            found.start_ticks,
            ended=found.ended,
        )
        return ref, adopted

    def _start(
        self, task: st.TaskState, n: int, adopt: Process | None, elapsed: float, spent: float
    ) -> tuple[pykka.ActorRef[Any], Launch]:
        adapter = adapter_for(task.spec.agent)
        assert adapter is not None, "plans are checked for known agents at submit"
        spec, wrapper = self._wrapper(task, n)
        launch = adapter.launch(spec, n, resume_id(task), feedback(task))
        env = {}
        if adopt is None:
            env = {
                **self.ctx.base_env,
                **task.spec.env,
                **launch.env,
                "ORCH_RUN_ID": self.run_id,
                "ORCH_TASK_ID": task.spec.id,
                "ORCH_ATTEMPT": str(n),
            }
        log_path = self.ctx.paths.attempt_log(self.run_id, task.spec.id, n)
        ref = SessionActor.start(
            self.ctx,
            self.run_id,
            spec,
            n,
            launch,
            adapter,
            env,
            log_path,
            wrapper,
            adopt,
            elapsed,
            spent,
        )
        return ref, launch

    def _wrapper(self, task: st.TaskState, n: int) -> tuple[TaskSpec, Wrapper | None]:
        """The task's spec as attempt `n` sees it, and what the attempt's process does around its
        agent: prepare its worktree, verify its work (None: nothing, the agent starts directly)."""
        spec = task.spec
        ws = workspace.workspace_of(self.ctx.paths.worktrees, self.run_id, spec)
        prep = None
        if ws is not None:
            spec = msgspec.structs.replace(spec, cwd=ws.cwd)
            fresh = n > 1 and resume_id(task) is None
            # files to copy come from the task's own directory (a task may name its workdir)
            prep = Prep(ws, task.spec.cwd, spec.copy, spec.setup, fresh=fresh)
        if prep is None and not spec.verify:
            return spec, None
        grace = self.ctx.kill_grace
        return spec, Wrapper(spec.cwd, prep, spec.verify, spec.verify_timeout, grace=grace)

    def create_logs(self) -> None:
        while self.logs:
            create_log(self.logs.pop())

    def create_ahead(self, task: st.TaskState) -> None:
        """The log of `task`'s next attempt, if it can still launch."""
        path = self.ctx.paths.attempt_log(self.run_id, task.spec.id, len(task.attempts) + 1)
        if task.state not in st.TERMINAL and not task.cancel_requested and path not in self.made:
            create_log(path)
            self.made.add(path)


def create_log(log_path: Path) -> None:
    """An attempt's (empty) log, made ahead of its spawn; if this fails, the spawn says why."""
    try:
        os.close(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600))
    except OSError:
        pass


def feedback(task: st.TaskState) -> VerifyResult | None:
    """The failed check of the task's latest attempt, for the next attempt's prompt."""
    last = task.attempts[-1] if task.attempts else None
    return last.verify if last is not None and last.outcome == VERIFY_FAILED else None


def resume_id(task: st.TaskState) -> str | None:
    """The agent session to continue, when the plan asks for it: the latest one an attempt reported."""
    if not task.spec.resume:
        return None
    return next((a.report.session_id for a in reversed(task.attempts) if a.report.session_id), None)
