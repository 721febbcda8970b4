"""What a run does when it is asked, each ask with a reply: to cancel or to retry tasks (the user),
to settle (orchd, as it stops: nothing starts any more; the reply once the run is at rest).

Carried out through the run's actor, like all it does: decide, record, act.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchd import events as ev
from orchd import state as st
from orchd.actors.messages import CancelTasks, RetryTasks, Settle, Settled, Unhold
from orchd.actors.pool import tell
from orchd.actors.ready import provider_of
from orchd.actors.session import Cancel, Interrupt

if TYPE_CHECKING:
    from orchd.actors.run import RunActor


class Requests:
    """One run's cancels, retries and settling."""

    def __init__(self, actor: RunActor) -> None:
        self.actor = actor
        self.settling: Settle | None = None  # orchd stops: start nothing, reply once at rest
        self.interrupted = 0  # sessions ended as interrupted while orchd stops

    # ------------------------------------------------------------ user requests

    def cancel(self, message: CancelTasks) -> None:
        actor = self.actor
        ids = message.task_ids or list(actor.run.tasks)
        live = [
            t for t in ids if actor.run.tasks[t].state not in st.TERMINAL and t not in actor.closing
        ]

        def act() -> None:
            actor.ready.remove(set(live))
            for tid in live:
                task = actor.run.tasks[tid]
                if tid in actor.sessions:
                    tell(actor.sessions[tid], Cancel())
                elif task.current is None and tid not in actor.closing:
                    if task.state not in st.TERMINAL:
                        actor._close(tid, [ev.TaskCancelled(actor.run_id, tid)])
            message.reply.set(len(live))

        if not live:
            message.reply.set(0)
            return
        actor._record([ev.CancelRequested(actor.run_id, live)], then=act)

    def retry(self, message: RetryTasks) -> None:
        """Failed and cancelled tasks run again; the holds on their providers (and on those of the
        run's tasks that wait) are released: the user says the cause is fixed."""
        actor = self.actor
        ids = message.task_ids or list(actor.run.tasks)
        tasks = [actor.run.tasks[t] for t in ids]
        again = [
            t.spec.id
            for t in tasks
            if t.state in ("failed", "cancelled") and t.spec.id not in actor.closing
        ]
        held = actor.ctx.blocked
        waiting = [t for t in tasks if t.state not in st.TERMINAL and provider_of(t) in held]
        providers = {provider_of(t) for t in tasks if t.spec.id in again} | {
            provider_of(t) for t in waiting
        }
        if providers - {""}:
            actor.ctx.supervisor.tell(Unhold(actor.run_id, sorted(providers - {""})))
        if not again:
            message.reply.set(len(waiting))
            return

        def act() -> None:
            actor._enqueue(again)
            message.reply.set(len(again) + len(waiting))

        actor._record([ev.RetryRequested(actor.run_id, again)], then=act)

    # ------------------------------------------------------------ orchd stops

    def settle(self, message: Settle) -> None:
        """orchd stops (nothing starts any more): with `end`, end every session (interrupted)."""
        self.settling = message
        if message.end:
            for session in self.actor.sessions.values():
                tell(session, Interrupt())

    def reply_if_settled(self) -> None:
        """Reply to Settle once the run is at rest: every launch recorded has its process (none is
        durable without one: the next orchd takes each over from the keeper); with `end`, every
        session has ended and its end is durable."""
        assert self.settling is not None
        actor = self.actor
        if self.settling.end:
            settled = not actor.sessions and not actor.ending
        else:
            settled = all(
                (a := actor.run.tasks[tid].current) is not None and a.pid is not None
                for tid in actor.sessions
            )
        if settled:
            self.reply_settled()

    def reply_settled(self) -> None:
        assert self.settling is not None
        self.settling.reply.set(Settled(self.interrupted))
        self.settling = None  # once: what the run does from here on is the next orchd's
