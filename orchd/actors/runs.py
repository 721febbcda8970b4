"""The run actors of one daemon, for the supervisor: started, restarted, told, forgotten.

`Context.runs` is the directory every thread uses to reach a run's current actor;
only the supervisor's thread writes it, through this class.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

import pykka

from orchd import events as ev
from orchd.actors.context import Context
from orchd.actors.messages import Resume, Submit
from orchd.actors.pool import tell
from orchd.actors.run import RunActor


class Runs:
    """Run actors by run id."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.refs = ctx.runs  # run id -> its RunActor (shared: messages for a run find it)

    def actor_for(self, run_id: str) -> pykka.ActorRef[Any]:
        """The run's actor, started (to take the run over from the log) if it has none alive."""
        ref = self.refs.get(run_id)
        if ref is None or not ref.is_alive():
            ref = self.refs[run_id] = RunActor.start(self.ctx, run_id)
            ref.tell(Resume())  # after it is in `refs`: what the journal tells the run reaches it
        return ref

    def tell(self, run_id: str, message: Any) -> bool:
        """Tell the run's actor; False when it is gone (its RunCrashed is on the way)."""
        ref = self.refs.get(run_id)
        return ref is not None and tell(ref, message)

    def restart(self, run_id: str) -> None:
        del self.refs[run_id]
        self.actor_for(run_id)

    def forget(self, run_id: str) -> None:
        ref = self.refs.pop(run_id, None)
        if ref is not None:
            ref.stop(block=False)

    def stop_all(self) -> None:
        """On daemon shutdown: stop every run actor. Their attempts' processes keep running under
        the keeper, for the next orchd to take over (`--end-sessions` ended them before: Settle)."""
        for ref in list(self.refs.values()):
            ref.stop(block=False)

    def submit(self, message: Submit) -> None:
        """Record a new run, then start its actor and reply with its id."""
        run_id = self._new_run_id(message.spec.name)

        def recorded(records: Any, error: Any) -> None:
            if error is not None:
                message.reply.set_exception(exc_info=(type(error), error, None))
            else:
                self.ctx.supervisor.tell(Started(run_id, message.reply))

        submitted = ev.RunSubmitted(run_id, message.spec, message.source)
        self.ctx.journal.append([submitted], recorded, refuse=True)  # disk full: say so, now

    def started(self, started: Started) -> None:
        self.actor_for(started.run_id)
        started.reply.set(started.run_id)

    def _new_run_id(self, name: str) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "run"
        with self.ctx.journal.lock:
            known = self.ctx.journal.state.runs
            while True:
                run_id = f"{slug}-{secrets.token_hex(3)}"
                if run_id not in known and run_id not in self.refs:
                    return run_id


class Started:
    """A new run is in the log: start its actor (on the supervisor's thread), then reply."""

    __slots__ = ("reply", "run_id")

    def __init__(self, run_id: str, reply: pykka.Future[Any]) -> None:
        self.run_id, self.reply = run_id, reply
