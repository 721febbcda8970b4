"""SessionActor: one per attempt. Launches and watches one agent process."""

from __future__ import annotations

import _thread
import errno
import logging
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import msgspec

from orchd import events as ev
from orchd import workspace
from orchd.actors.context import Actor, Context
from orchd.agents.base import (CANCELLED, LOST, PERMANENT, RETRY, SUCCESS, TIMEOUT, AgentAdapter, Exit, Launch,
                               Outcome, tail)
from orchd.executors.local import Process
from orchd.plan import TaskSpec

log = logging.getLogger(__name__)

PREP_EXITS = (workspace.SETUP_FAILED, workspace.CANNOT_RUN, workspace.NOT_FOUND)


@dataclass(frozen=True)
class SessionEnded:
    task_id: str
    attempt: int
    exit: Exit | None
    outcome: Outcome
    duration: float


class Cancel:
    """Stop the attempt: TERM its process group, KILL after the grace period."""


class _Exited:
    pass


class _Timeout:
    pass


class _Kill:
    pass


class SessionActor(Actor):
    """Owns one attempt's process from spawn to exit; reports to its run."""

    def __init__(self, ctx: Context, run: Any, task: TaskSpec, attempt: int,
                 launch: Launch, adapter: AgentAdapter, env: dict[str, str], log_path: Path,
                 prep: workspace.Prep | None = None, adopt: Process | None = None,
                 elapsed: float = 0.0, record: Callable[[list[ev.Event]], None] = lambda events: None,
                 run_id: str = "") -> None:
        super().__init__()
        self.ctx, self.run, self.task, self.attempt = ctx, run, task, attempt
        self.launch, self.adapter, self.env, self.log_path = launch, adapter, env, log_path
        self.record, self.run_id = record, run_id
        self.prep = prep  # worktree isolation: the attempt's process prepares it, then execs the agent
        self.process: Process | None = adopt  # a process that outlived the previous orchd, to watch again
        self.adopted = adopt is not None
        self.elapsed = elapsed  # seconds the attempt ran before this session took it over
        self.stopping: str | None = None  # TIMEOUT or CANCELLED once we began to stop it
        self.timers: list = []
        self.started = time.monotonic()

    def _start_actor_loop(self) -> None:
        # pykka starts each actor with threading.Thread.start(), which blocks the caller (the run
        # actor) until the new thread has run; a session needs no Thread object, so its loop
        # starts without that hand-off (measured: about half the cost of starting a session)
        _thread.start_new_thread(self._actor_loop, ())

    def on_start(self) -> None:
        if self.adopted:
            self._watch()
            return
        try:
            if self.prep is None:
                argv, cwd = self.launch.argv, self.launch.cwd
            else:
                argv, cwd = workspace.wrap(self.prep, self.launch.argv), self.prep.workdir
            self.process = self.ctx.executor.spawn(argv, self.env, cwd, self.log_path, self.launch.stdin)
        except OSError as exc:
            reason = f"cannot start {self.launch.argv[0]!r}: {exc.strerror or exc}"
            # out of space or descriptors passes; a missing or unrunnable program does not
            transient = exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EMFILE, errno.ENFILE, errno.EAGAIN,
                                      errno.ENOMEM)
            try:
                with open(self.log_path, "a") as f:
                    f.write(f"orch: {reason}\n")
            except OSError:
                pass
            self._end(None, Outcome(RETRY if transient else PERMANENT, reason=reason))
            return
        p = self.process  # its pid goes to the log straight from here (the run folds it when durable)
        self.record([ev.AttemptStarted(self.run_id, self.task.id, self.attempt, pid=p.pid, pgid=p.pgid,
                                       start_ticks=p.start_ticks)])
        self._watch()

    def _watch(self) -> None:
        assert self.process is not None
        me = self.actor_ref
        self.ctx.executor.watch(self.process, lambda: me.tell(_Exited()))
        remaining = max(0.0, self.task.timeout - self.elapsed)
        self.timers.append(self.ctx.reactor.call_later(remaining, lambda: me.tell(_Timeout())))

    def on_receive(self, message: Any) -> None:
        if isinstance(message, _Exited):
            self._exited()
        elif isinstance(message, _Timeout):
            self._terminate(TIMEOUT)
        elif isinstance(message, Cancel):
            self._terminate(CANCELLED)
        elif isinstance(message, _Kill) and self.process is not None:
            self.ctx.executor.signal(self.process, signal.SIGKILL)

    def on_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        if self.process is not None:
            self.ctx.executor.signal(self.process, signal.SIGKILL)
        self.run.tell(SessionEnded(self.task.id, self.attempt, None,
                                   Outcome("lost", reason=f"session failed: {exception_value}"),
                                   time.monotonic() - self.started))

    def _terminate(self, why: str) -> None:
        if self.stopping is not None or self.process is None:
            return
        self.stopping = why
        self.ctx.executor.signal(self.process, signal.SIGTERM)
        me = self.actor_ref
        self.timers.append(self.ctx.reactor.call_later(self.ctx.kill_grace, lambda: me.tell(_Kill())))

    def _exited(self) -> None:
        assert self.process is not None
        # The leader is a zombie until reaped, so its pgid cannot be reused yet: kill whatever it
        # left in its group, then reap it. (An adopted leader was reaped by init: its pgid may be reused.)
        if not self.adopted:
            self.ctx.executor.signal(self.process, signal.SIGKILL)
        exit_code, sig = self.ctx.executor.reap(self.process)
        exit = Exit(exit_code, sig, str(self.log_path))
        if self.stopping == CANCELLED:
            outcome = Outcome(CANCELLED, reason="cancelled by the user")
        elif self.stopping == TIMEOUT:
            outcome = Outcome(TIMEOUT, reason=f"timed out after {self.task.timeout:g}s")
        elif (why := self._prep_failure(exit)) is not None:
            outcome = why
        elif exit_code is None and sig is None:
            outcome = Outcome(LOST, reason="the attempt ended while orchd was down and left no exit status"
                              if self.adopted else "the attempt's process was lost (its node died): no exit status")
        else:
            outcome = self.adapter.classify(self.task, exit)
            if outcome.outcome == SUCCESS and self.prep is not None:
                outcome = self._commit(outcome)
        self._end(exit, outcome)

    def _prep_failure(self, exit: Exit) -> Outcome | None:
        """The wrappers' own failure (workspace, setup, agent not startable), told by its exit code and last line."""
        if exit.exit_code not in PREP_EXITS:
            return None
        lines = tail(exit.log_path, 2048).rstrip().splitlines()
        if not lines or not lines[-1].startswith("orch: "):
            return None
        reason = lines[-1][len("orch: "):]
        hint = getattr(self.adapter, "install_hint", "")
        if exit.exit_code == workspace.NOT_FOUND and hint:
            reason = f"{reason}: {hint}"
        return Outcome(RETRY if exit.exit_code == workspace.SETUP_FAILED else PERMANENT, reason=reason)

    def _commit(self, outcome: Outcome) -> Outcome:
        """Commit a successful attempt's changes to the task's branch, listing the files it changed."""
        assert self.prep is not None
        message = f"orch: {self.task.id}\n\n{outcome.report.result[:4000]}".rstrip() + "\n"
        try:
            files = workspace.commit(self.prep.workspace, message, self.prep.copy)
        except workspace.GitError as exc:
            return Outcome(RETRY, reason=f"could not commit the task's changes: {exc.message}")
        return msgspec.structs.replace(outcome, report=msgspec.structs.replace(outcome.report, files=files))

    def _end(self, exit: Exit | None, outcome: Outcome) -> None:
        for timer in self.timers:
            timer.cancel()
        self.run.tell(SessionEnded(self.task.id, self.attempt, exit, outcome, time.monotonic() - self.started))
        self.stop()
