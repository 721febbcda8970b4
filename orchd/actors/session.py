"""Session: one attempt's process, from start to exit.

A session has no thread of its own: it lives on its run actor's thread, which
hands it what happens to its attempt (`SessionEvent`: started, exited, timed
out, time to kill) as messages in the run's mailbox. The executor starts the
process without blocking, and the reactor watches it, so a run with 64 attempts
running has no thread per attempt (measured: thread start-up and the hand-offs
between 64 threads were most of orchd's cost per task).
"""

from __future__ import annotations

import _thread
import errno
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from orchd import events as ev
from orchd import workspace
from orchd.actors.context import Context
from orchd.agents.base import (
    CANCELLED,
    LOST,
    PERMANENT,
    RETRY,
    SUCCESS,
    TIMEOUT,
    AgentAdapter,
    Exit,
    Launch,
    Outcome,
    tail,
)
from orchd.executors.base import Process
from orchd.plan import TaskSpec

log = logging.getLogger(__name__)

PREP_EXITS = (workspace.SETUP_FAILED, workspace.CANNOT_RUN, workspace.NOT_FOUND)
TRANSIENT = (errno.ENOSPC, errno.EDQUOT, errno.EMFILE, errno.ENFILE, errno.EAGAIN, errno.ENOMEM)

STARTED, EXITED, TIMED_OUT, KILL, CHECKED = "started", "exited", "timed out", "kill", "checked"


@dataclass(frozen=True)
class SessionEnded:
    task_id: str
    attempt: int
    exit: Exit | None
    outcome: Outcome
    duration: float
    process: Process | None = None  # for the executor to forget once the attempt's end is durable


class SessionEvent:
    """Something that happened to a session's attempt, for its run actor to hand to it."""

    __slots__ = ("session", "value", "what")

    def __init__(self, session: Session, what: str, value: Any = None) -> None:
        self.session, self.what, self.value = session, what, value


class Session:
    """Owns one attempt's process from start to exit; reports to its run with `on_end`."""

    def __init__(
        self,
        ctx: Context,
        run: Any,
        task: TaskSpec,
        attempt: int,
        launch: Launch,
        adapter: AgentAdapter,
        env: dict[str, str],
        log_path: Path,
        on_end: Callable[[SessionEnded], None],
        prep: workspace.Prep | None = None,
        adopt: Process | None = None,
        elapsed: float = 0.0,
        record: Callable[[list[ev.Event]], None] = lambda events: None,
        run_id: str = "",
    ) -> None:
        self.ctx, self.run, self.task, self.attempt = ctx, run, task, attempt
        self.launch, self.adapter, self.env, self.log_path = launch, adapter, env, log_path
        self.on_end, self.record, self.run_id = on_end, record, run_id
        self.prep = (
            prep  # worktree isolation: the attempt's process prepares it, then execs the agent
        )
        self.process: Process | None = (
            adopt  # a process that outlived the previous orchd, to watch again
        )
        self.adopted = adopt is not None
        self.elapsed = elapsed  # seconds the attempt ran before this session took it over
        self.stopping: str | None = None  # TIMEOUT or CANCELLED once we began to stop it
        self.timers: list = []
        self.started = time.monotonic()

    def _later(self, what: str) -> Callable[..., None]:
        """A callback (for another thread) that brings `what` back to this session on its run's thread."""
        run = self.run
        return lambda value=None: run.tell(SessionEvent(self, what, value))

    def start(self) -> None:
        """Start the attempt's process (on the journal's thread, once its AttemptLaunching is
        durable; on the run's thread for an adopted one, to watch it again)."""
        if self.adopted:
            self._watch()
            return
        if self.stopping == CANCELLED:  # cancelled before it started: it never will
            self._later(CHECKED)((None, Outcome(CANCELLED, reason="cancelled by the user")))
            return
        if (
            self.ctx.stopping
        ):  # orchd is stopping (and has killed what ran): a restart records it lost
            return
        if self.prep is None:
            argv, cwd = self.launch.argv, self.launch.cwd
        else:
            argv, cwd = workspace.wrap(self.prep, self.launch.argv), self.prep.workdir
        started = self._later(STARTED)
        try:
            self.ctx.executor.start(argv, self.env, cwd, self.log_path, self.launch.stdin, started)
        except Exception as exc:  # not on the run's thread: say it here, or the attempt would hang
            log.exception("cannot start %s", self.task.id)
            started(OSError(errno.EIO, f"orch could not start it: {exc}"))

    def handle(self, event: SessionEvent) -> None:
        if event.what == STARTED:
            self._started(event.value)
        elif event.what == EXITED:
            self._exited()
        elif event.what == TIMED_OUT:
            self._terminate(TIMEOUT)
        elif event.what == KILL and self.process is not None:
            self.ctx.executor.signal(self.process, signal.SIGKILL)
        elif event.what == CHECKED:
            self._end(*event.value)

    def cancel(self) -> None:
        self._terminate(CANCELLED)

    def _started(self, result: Process | OSError) -> None:
        if isinstance(result, OSError):
            self._not_started(result)
            return
        self.process = p = (
            result  # its pid goes to the log straight from here (the run folds it when durable)
        )
        self.record(
            [
                ev.AttemptStarted(
                    self.run_id,
                    self.task.id,
                    self.attempt,
                    pid=p.pid,
                    pgid=p.pgid,
                    start_ticks=p.start_ticks,
                )
            ]
        )
        self._watch()
        if self.stopping is not None:  # cancelled while it was starting
            self._signal_stop()

    def _not_started(self, exc: OSError) -> None:
        reason = f"cannot start {self.launch.argv[0]!r}: {exc.strerror or exc}"
        hint = getattr(self.adapter, "install_hint", "")
        if exc.errno == errno.ENOENT and hint:
            reason = f"{reason}: {hint}"
        try:
            with open(self.log_path, "a") as f:
                f.write(f"orch: {reason}\n")
        except OSError:
            pass
        # out of space or descriptors passes; a missing or unrunnable program does not
        self._end(None, Outcome(RETRY if exc.errno in TRANSIENT else PERMANENT, reason=reason))

    def _watch(self) -> None:
        assert self.process is not None
        self.ctx.executor.watch(self.process, self._later(EXITED))
        remaining = max(0.0, self.task.timeout - self.elapsed)
        self.timers.append(self.ctx.reactor.call_later(remaining, self._later(TIMED_OUT)))

    def _terminate(self, why: str) -> None:
        if self.stopping is not None:
            return
        self.stopping = why
        if self.process is not None:
            self._signal_stop()

    def _signal_stop(self) -> None:
        assert self.process is not None
        self.ctx.executor.signal(self.process, signal.SIGTERM)
        self.timers.append(self.ctx.reactor.call_later(self.ctx.kill_grace, self._later(KILL)))

    def _exited(self) -> None:
        assert self.process is not None
        exit_code, sig = self.ctx.executor.reap(self.process)
        exit = Exit(exit_code, sig, str(self.log_path))
        if self.stopping == CANCELLED:
            outcome = Outcome(CANCELLED, reason="cancelled by the user")
        elif self.stopping == TIMEOUT:
            outcome = Outcome(TIMEOUT, reason=f"timed out after {self.task.timeout:g}s")
        elif (why := self._prep_failure(exit)) is not None:
            outcome = why
        elif exit_code is None and sig is None:
            outcome = Outcome(
                LOST,
                reason="the attempt ended while orchd was down and left no exit status"
                if self.adopted
                else "the attempt's process was lost (its node died): no exit status",
            )
        else:
            outcome = self.adapter.classify(self.task, exit)
            if outcome.outcome == SUCCESS and self.prep is not None:
                # committing runs git: off the run's thread, so that the run goes on dispatching
                done = self._later(CHECKED)
                _thread.start_new_thread(lambda: done((exit, self._commit(outcome))), ())
                return
        self._end(exit, outcome)

    def _prep_failure(self, exit: Exit) -> Outcome | None:
        """The wrappers' own failure (workspace, setup, agent not startable), told by its exit code and last line."""
        if exit.exit_code not in PREP_EXITS:
            return None
        lines = tail(exit.log_path, 2048).rstrip().splitlines()
        if not lines or not lines[-1].startswith("orch: "):
            return None
        reason = lines[-1][len("orch: ") :]
        hint = getattr(self.adapter, "install_hint", "")
        if exit.exit_code == workspace.NOT_FOUND and hint:
            reason = f"{reason}: {hint}"
        return Outcome(
            RETRY if exit.exit_code == workspace.SETUP_FAILED else PERMANENT, reason=reason
        )

    def _commit(self, outcome: Outcome) -> Outcome:
        """Commit a successful attempt's changes to the task's branch, listing the files it changed."""
        assert self.prep is not None
        message = f"orch: {self.task.id}\n\n{outcome.report.result[:4000]}".rstrip() + "\n"
        try:
            files = workspace.commit(self.prep.workspace, message, self.prep.copy)
        except workspace.GitError as exc:
            return Outcome(RETRY, reason=f"could not commit the task's changes: {exc.message}")
        return msgspec.structs.replace(
            outcome, report=msgspec.structs.replace(outcome.report, files=files)
        )

    def _end(self, exit: Exit | None, outcome: Outcome) -> None:
        for timer in self.timers:
            timer.cancel()
        self.on_end(
            SessionEnded(
                self.task.id,
                self.attempt,
                exit,
                outcome,
                time.monotonic() - self.started,
                self.process,
            )
        )
