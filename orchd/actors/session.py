"""SessionActor: one attempt's process, from its start to the moment its end is durable.

Each attempt is a pykka actor of its own, supervised by its run actor, without a
thread of its own: its inbox runs on the daemon's small shared pool (pool.py).
The executor starts the process without blocking and the reactor watches it; they
`tell` the session what happened (started, exited, time is up), and the session
tells its run how the attempt ended (`SessionEnded`). It stays alive until the run
says that end is durable (`Recorded`), so a run actor that fails and restarts from
the log finds its sessions still there and takes them over (`Reattach`).
"""

from __future__ import annotations

import enum
import errno
import functools
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from orchd import disk
from orchd import events as ev
from orchd.actors import reading as read
from orchd.actors.context import Context
from orchd.actors.pool import PooledActor, tell, teller
from orchd.actors.stream import Stream
from orchd.agents.base import AgentAdapter, Launch
from orchd.attempt import Wrapper, start_dir, wrap
from orchd.decide import (
    CANCELLED,
    DISK_FULL,
    INTERRUPTED,
    LOST,
    PERMANENT,
    RETRY,
    STALLED,
    TIMEOUT,
    Ended,
    Exit,
    Outcome,
)
from orchd.executors.base import UNANSWERED, Process
from orchd.plan import TaskSpec
from orchd.reactor import Timer

log = logging.getLogger(__name__)

DECIDED = "decided"  # stopping: the attempt ends as its `verdict` says
WON = (None, INTERRUPTED)  # success counts, and is committed, unless orch stopped it otherwise
TRANSIENT = (errno.ENOSPC, errno.EDQUOT, errno.EMFILE, errno.ENFILE, errno.EAGAIN, errno.ENOMEM)


# ------------------------------------------------------------ messages a session takes


@dataclass(frozen=True)
class Start:
    """Run → session: the attempt's AttemptLaunching is durable: start its process."""


@dataclass(frozen=True)
class Cancel:
    """Run → session: the user cancelled the task: stop the attempt (TERM, then KILL)."""


@dataclass(frozen=True)
class Interrupt:
    """Run → session: orchd stops and ends its sessions (`--end-sessions`): TERM, then KILL."""


@dataclass(frozen=True)
class Recorded:
    """Run → session: the attempt's end is durable: let go of it, and stop."""


@dataclass(frozen=True)
class Reattach:
    """A restarted run → session: report to me (again) how the attempt ended."""


@dataclass(frozen=True)
class SessionEnded:
    """Session → run: the attempt ended. `held`: its stream had the supervisor hold its provider
    (told before this, so a slot handed back to the supervisor finds the hold in place)."""

    task_id: str
    attempt: int
    ended: Ended
    held: bool = False


@dataclass(frozen=True)
class _Started:
    result: Process | OSError


class Cue(enum.Enum):
    """What a session's own watchers and timers tell it."""

    EXITED = "its process exited"
    TIMED_OUT = "its timeout passed"
    KILL = "its kill grace passed"
    GREW = "its log grew"
    STALL_CHECK = "time to look for a stall"


@dataclass(frozen=True)
class _Found:
    """What is left of an attempt whose start was asked for and whose answer was lost."""

    found: Process | BaseException | None


@dataclass(frozen=True)
class _Checked:
    exit: Exit
    reading: Outcome | BaseException


class SessionActor(PooledActor):
    """Owns one attempt's process from start to exit; tells its run how it ended."""

    def __init__(
        self,
        ctx: Context,
        run_id: str,
        task: TaskSpec,
        attempt: int,
        launch: Launch,
        adapter: AgentAdapter,
        env: dict[str, str],
        log_path: Path,
        wrapper: Wrapper | None = None,
        adopt: Process | None = None,
        elapsed: float = 0.0,
        spent_before: float = 0.0,
    ) -> None:
        super().__init__(ctx.dispatcher)
        self.ctx, self.run_id, self.task, self.attempt = ctx, run_id, task, attempt
        self.launch, self.adapter, self.env, self.log_path = launch, adapter, env, log_path
        # a worktree or checks: the attempt's process prepares it, runs the agent, verifies
        self.wrapper = wrapper
        self.prep = wrapper.prep if wrapper is not None else None
        self.process: Process | None = adopt  # a process that outlived the previous orchd
        self.adopted = adopt is not None
        self.elapsed = elapsed  # seconds the attempt ran before this session took it over
        self.stopping: str | None = None  # why we began to stop it (CANCELLED, TIMEOUT, ...)
        self.timers: list[Timer] = []
        self.started = time.monotonic()
        self.verdict: Outcome | None = None  # how it ends, decided while it ran (decide.live)
        self.ended: SessionEnded | None = None  # told to the run, not yet durable
        self.key = (run_id, task.id, attempt)
        self.stream = Stream(self, spent_before) if task.agent != "command" or task.stall else None

    # ------------------------------------------------------------ lifecycle

    def on_start(self) -> None:
        self.ctx.sessions[self.key] = self.actor_ref
        if self.adopted:
            self._watch()

    def on_stop(self) -> None:
        self._forget()
        if self.stream is not None:
            self.stream.close()

    def on_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        """A fault in orch's own handling of the attempt: its process is stopped and the attempt
        ends as lost (retried without spending a retry), so that no task stays running for ever."""
        log.error("session %s/%s.%d failed: %s", *self.key, exception_value)
        self._forget()
        if self.process is not None:
            self.ctx.executor.signal(self.process, signal.SIGKILL)
        if self.ended is None:
            reason = f"orch's session of the attempt failed ({exception_value!r})"
            self._end(None, Outcome(LOST, reason=reason))

    def _forget(self) -> None:
        for timer in self.timers:
            timer.cancel()
        if self.ctx.sessions.get(self.key) is self.actor_ref:
            del self.ctx.sessions[self.key]

    # ------------------------------------------------------------ messages

    def on_receive(self, message: Any) -> None:
        kind = type(message)
        if kind is _Started:
            self._started(message.result)
        elif message is Cue.EXITED:
            self._exited()
        elif kind is _Found:
            self._found(message.found)
        elif kind is _Checked:
            self._checked(message.exit, message.reading)
        elif kind is Start:
            self._start()
        elif kind is Cancel:
            self._terminate(CANCELLED)
        elif kind is Interrupt:
            self._terminate(INTERRUPTED)
        elif message is Cue.TIMED_OUT:
            self._terminate(TIMEOUT)
        elif message is Cue.KILL and self.process is not None:
            self.ctx.executor.signal(self.process, signal.SIGKILL)
        elif message is Cue.GREW and self.stream is not None and self.ended is None:
            self.stream.read()
        elif message is Cue.STALL_CHECK and self.stream is not None and self.ended is None:
            if self.stream.stalled():
                self._terminate(STALLED)
        elif kind is Recorded:
            if self.process is not None:
                self.ctx.executor.forget(self.process)
            self._stop()  # at once: what else it may be told is of no use now
        elif kind is Reattach and self.ended is not None:
            self._report()

    def _tell(self, message: Any) -> Callable[..., None]:
        """A callback (for another thread) that brings `message` back to this session."""
        return teller(self.actor_ref, message)

    # ------------------------------------------------------------ the attempt

    def _start(self) -> None:
        """Start the attempt's process, once its AttemptLaunching is durable."""
        if self.stopping is not None:  # cancelled or interrupted before it started: it never will
            self._end(None, Outcome(self.stopping))
            return
        # even while orchd stops: its launch is durable, so it starts, and the next orchd takes it
        # over from the keeper (orchd stops once every recorded launch has started: Settle)
        if self.wrapper is None:
            argv, cwd = self.launch.argv, self.launch.cwd
        else:
            argv, cwd = wrap(self.wrapper, self.launch.argv), start_dir(self.wrapper)
        ref = self.actor_ref

        def started(result: Process | OSError) -> None:
            tell(ref, _Started(result))

        try:
            self.ctx.executor.start(argv, self.env, cwd, self.log_path, self.launch.stdin, started)
        except Exception as exc:
            log.exception("cannot start %s", self.task.id)
            self._not_started(OSError(errno.EIO, f"orch could not start it: {exc}"))

    def _started(self, result: Process | OSError) -> None:
        if isinstance(result, OSError):
            self._not_started(result)
            return
        self.process = p = result
        started = ev.AttemptStarted(
            self.run_id,
            self.task.id,
            self.attempt,
            pid=p.pid,
            pgid=p.pgid,
            start_ticks=p.start_ticks,
        )
        self.ctx.record(self.run_id, [started], lazy=True, origin=self)  # nothing waits for it
        self._watch()
        if self.stopping is not None:  # cancelled while it was starting
            self._signal_stop()

    def _not_started(self, exc: OSError) -> None:
        if exc.errno == UNANSWERED:  # it may run, or have run: what is left of it says how it went
            ref, ctx, key = self.actor_ref, self.ctx, (self.run_id, self.task.id, self.attempt)
            find = functools.partial(ctx.executor.find, *key, None, self.log_path)

            def found(result: Process | BaseException | None) -> None:
                tell(ref, _Found(result))

            ctx.dispatcher.blocking(find, found)
            return
        reason = f"cannot start {self.launch.argv[0]!r}: {exc.strerror or exc}"
        hint = getattr(self.adapter, "install_hint", "")
        if exc.errno == errno.ENOENT and hint:
            reason = f"{reason}: {hint}"
        try:
            with open(self.log_path, "a") as f:
                f.write(f"orch: {reason}\n")
        except OSError:
            pass
        # out of space or descriptors, a keeper that died, pass: it never ran (lost: retried
        # without spending a retry); a missing or unrunnable program does not pass
        self._end(None, Outcome(LOST if exc.errno in TRANSIENT else PERMANENT, reason=reason))

    def _found(self, found: Process | BaseException | None) -> None:
        """Once nothing of it runs (an orphan is ended): its status if its keeper journaled one,
        else what its log proves, else lost (`_exited`)."""
        if isinstance(found, BaseException):
            log.error("cannot look for attempt %d of %s: %r", self.attempt, self.task.id, found)
        if isinstance(found, Process) and not found.ended:  # a keeper still runs it
            self.process = found
            self._watch()
            return
        gone = Process(0, 0, 0, log_path=self.log_path, ended=True)
        self.process = found if isinstance(found, Process) else gone
        self._exited()

    def _watch(self) -> None:
        assert self.process is not None
        self.ctx.executor.watch(self.process, self._tell(Cue.EXITED))
        remaining = max(0.0, self.task.timeout - self.elapsed)
        self.timers.append(self.ctx.reactor.call_later(remaining, self._tell(Cue.TIMED_OUT)))
        if self.stream is not None:
            self.stream.follow()

    def stop_as(self, verdict: Outcome) -> None:
        """End the attempt now, as `verdict` (what its stream showed calls for it: decide.live)."""
        if self.verdict is None and self.ended is None:
            self.verdict = verdict
            self._terminate(DECIDED)

    def _terminate(self, why: str) -> None:
        if self.stopping is not None or self.ended is not None:
            return
        self.stopping = why
        if self.process is not None:
            self._signal_stop()

    def _signal_stop(self) -> None:
        assert self.process is not None
        self.ctx.executor.signal(self.process, signal.SIGTERM)
        self.timers.append(self.ctx.reactor.call_later(self.ctx.kill_grace, self._tell(Cue.KILL)))

    def _exited(self) -> None:
        assert self.process is not None
        exit_code, sig = self.ctx.executor.reap(self.process)
        exit = Exit(exit_code, sig, str(self.log_path))
        if self.stream is not None:
            self.stream.read(
                final=True
            )  # what it said last: a final refusal holds its provider too
        reading = read.wrapper_failure(exit, self.adapter)
        if reading is None and exit_code is None and sig is None:
            reading = read.proven(self.adapter, self.task, exit) or Outcome(
                LOST,
                reason="the attempt ended while orchd was down and left no exit status"
                if self.adopted
                else "the attempt's process was lost (its keeper or node died): no exit status",
            )
        if reading is None:  # read even when orch stopped it: what it cost counts
            reading = read.classify(self.adapter, self.task, exit)
        # an attempt taken over from an earlier orchd ran unwatched until this one started
        since = 0.0 if self.adopted else self.started
        if reading.outcome in (RETRY, LOST) and read.disk_was_full(exit, self.ctx.journal, since):
            why = f"{disk.full_reason(str(self.log_path.parent))}: it could not write its output"
            reading = Outcome(DISK_FULL, reason=why, report=reading.report)
        if self.verdict is not None:
            reading = msgspec.structs.replace(self.verdict, report=reading.report)
        if read.passed(reading) and self.prep is not None and self.stopping in WON:
            # committing runs git: on the blocking pool, so that sessions go on
            commit = functools.partial(read.commit, self.prep, self.task.id, reading)
            self.ctx.dispatcher.blocking(commit, self._tell_checked(exit))
            return
        self._end(exit, reading)

    def _tell_checked(self, exit: Exit) -> Callable[[Outcome | BaseException], None]:
        ref = self.actor_ref

        def checked(result: Outcome | BaseException) -> None:
            tell(ref, _Checked(exit, result))

        return checked

    def _checked(self, exit: Exit, reading: Outcome | BaseException) -> None:
        if isinstance(reading, BaseException):  # orch's commit failed in a way it did not foresee
            reading = Outcome(RETRY, reason=f"could not commit the task's changes: {reading!r}")
        self._end(exit, reading)

    def _end(self, exit: Exit | None, reading: Outcome) -> None:
        for timer in self.timers:
            timer.cancel()
        if self.stream is not None:
            self.stream.ended()
        duration = self.elapsed + time.monotonic() - self.started
        stopped = None if self.stopping == DECIDED else self.stopping
        ended = Ended(self.attempt, reading, exit=exit, stopped=stopped, duration=duration)
        held = self.stream is not None and self.stream.held
        self.ended = SessionEnded(self.task.id, self.attempt, ended, held)
        self._report()

    def _report(self) -> None:
        """Tell the run how the attempt ended; if the run is restarting, its successor asks again."""
        assert self.ended is not None
        self.ctx.tell_run(self.run_id, self.ended)
