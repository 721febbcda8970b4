"""A session's live view of its attempt's output: read as it is written, acted on at once.

The log is read from where the last read ended (never twice), on the session's own
turn, whenever inotify says it grew; the agent's parser (orchd.streams) turns it
into signals, and `decide.live` says what each calls for: stop the attempt now,
hold or throttle its provider (told to the supervisor). Signals worth keeping go
to the log (`AttemptSignaled`; what it spent, at most every SPEND_EVERY seconds),
so that `status`, `watch` and `why` show them. A task with `stall` is also checked
for output now and then: none for that long stops the attempt. Once the agent has exited and the
task's checks run (orchd/verify.py), the log is theirs: nothing in it is acted on, and their own
`verify_timeout`, not `stall`, bounds them.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from orchd import decide
from orchd import events as ev
from orchd.actors.messages import Served, Trouble
from orchd.streams import Answered, ApiError, Limit, Spend, parser_for

if TYPE_CHECKING:
    from orchd.actors.session import SessionActor
    from orchd.streams.base import Signal

CHUNK = 1 << 20  # bytes read at a time
TURN = 4 << 20  # bytes read in one turn of the session before it lets others go first
SPEND_EVERY = 5.0  # seconds between two records of what an attempt has spent so far


class Stream:
    """What one attempt's output has said so far."""

    def __init__(self, session: SessionActor, spent_before: float) -> None:
        self.session = session
        self.parser = parser_for(session.task.agent)
        task = session.task
        # commands print text: nothing to act on, unless a stall must know when checks began
        self.parsed = task.agent != "command" or bool(task.stall and task.verify)
        self.spent_before = spent_before
        self.offset = 0
        self.watch: int | None = None
        self.recorded = Spend()
        self.recorded_at = 0.0
        self.size = -1  # the log's size at the last stall check, and when it last changed
        self.changed = time.monotonic()
        self.answered = False  # the provider has answered this attempt
        self.told = False  # the supervisor heard of this session (an answer, a throttle)
        self.held = False  # the supervisor was told to hold the provider

    def follow(self) -> None:
        """The process runs: hear of each write to its log, and check for stalls."""
        session = self.session
        if self.parsed and session.ctx.growth is not None:
            from orchd.actors.session import Cue

            self.watch = session.ctx.growth.watch(session.log_path, session._tell(Cue.GREW))
            self.read()  # what it wrote before the watch (all of it, for an attempt taken over)
        if session.task.stall:
            self._arm()

    def close(self) -> None:
        if self.watch is not None and self.session.ctx.growth is not None:
            self.session.ctx.growth.unwatch(self.watch)
            self.watch = None
        self.ended()

    def ended(self) -> None:
        """The attempt ended: the supervisor forgets what it heard of it."""
        if self.told:
            self.told = False
            self.session.ctx.supervisor.tell(self._served(ended=True))

    def _served(self, ended: bool = False) -> Served:
        session = self.session
        provider = session.task.provider or ""
        return Served(provider, session.run_id, session.task.id, session.started, ended)

    def read(self, final: bool = False) -> None:
        """Read what was written since the last read, and act on its signals. `final`: the process
        has ended: read to the end, act on nothing that would stop it."""
        if not self.parsed:
            return
        try:
            fd = os.open(self.session.log_path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return
        read = 0
        try:
            while final or read < TURN:
                data = os.pread(fd, CHUNK, self.offset)
                if not data:
                    break
                self.offset += len(data)
                read += len(data)
                for signal in self.parser.feed(data):
                    self._act(signal, final)
        except OSError:
            pass
        finally:
            os.close(fd)
        if not final and read >= TURN:  # more to read: after the other sessions' turns
            from orchd.actors.session import Cue

            self.session._tell(Cue.GREW)()

    def stalled(self) -> bool:
        """Whether the attempt has written nothing for its `stall` time (else check again later)."""
        stall = self.session.task.stall or 0.0
        self.read()  # up to now: the checks may have begun
        if self.parser.checking:  # the agent is done; its checks have their own timeout
            return False
        try:
            size = os.stat(self.session.log_path).st_size
        except OSError:
            size = self.size
        now = time.monotonic()
        if size != self.size:
            self.size, self.changed = size, now
        if now - self.changed >= stall:
            return True
        self._arm()
        return False

    def _arm(self) -> None:
        from orchd.actors.session import Cue

        stall = self.session.task.stall or 0.0
        check = max(1.0, stall / 4)
        self.session.timers.append(
            self.session.ctx.reactor.call_later(check, self.session._tell(Cue.STALL_CHECK))
        )

    def _act(self, signal: Signal, final: bool) -> None:
        session, now = self.session, time.time()
        if isinstance(signal, Answered):
            pass  # not worth a record: the supervisor counts it
        elif not isinstance(signal, Spend):
            self._record(signal)
        elif not final and signal != self.recorded and now - self.recorded_at >= SPEND_EVERY:
            self.recorded, self.recorded_at = signal, now
            self._record(signal)
        hint = getattr(session.adapter, "auth_hint", "")
        live = decide.live(signal, session.task, self.spent_before, now, hint, self.answered)
        if live is None:
            return
        provider = session.task.provider
        if live.answered and not self.answered:
            self.answered = True
            if provider and not final:
                self.told = True
                session.ctx.supervisor.tell(self._served())
        if provider and (live.throttle or live.pause or live.hold):
            trouble = Trouble(provider, session.run_id, session.task.id, live, session.started)
            session.ctx.supervisor.tell(trouble)
            self.told = True
            self.held = self.held or live.hold is not None
        if live.stop is not None and not final:  # an attempt that ended is classified as it is
            session.stop_as(live.stop)

    def _record(self, signal: Signal) -> None:
        session = self.session
        assert isinstance(signal, (ApiError, Limit, Spend))
        event = ev.AttemptSignaled(session.run_id, session.task.id, session.attempt, signal)
        session.ctx.record(session.run_id, [event], lazy=True, origin=session)
