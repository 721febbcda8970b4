"""Actors without a thread each: pykka actors whose inboxes share a few threads.

A `PooledActor` is a real pykka actor (an `ActorRef`, `tell`/`ask`, `on_start`,
`on_stop`, `on_failure`), but it has no thread of its own. Its inbox schedules
the actor on a `Dispatcher` (Akka's name; Orleans' grains run the same way)
whenever a message arrives and the actor is not already scheduled; a pool thread
then hands it up to THROUGHPUT messages, one at a time, and puts it back at the
end of the queue if more wait. So each actor still sees one message at a time,
in order, and 300 sessions cost 300 small objects, not 300 threads (a thread per
session was most of orchd's cost per task, measured in session 3).

Pooled actors must not block: what blocks (git, a file system that may hang)
goes to `Dispatcher.blocking`, a small bounded pool of its own.
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import queue
import sys
import threading
from collections.abc import Callable
from typing import Any

import pykka
from pykka import messages as pykka_messages
from pykka._envelope import Envelope

log = logging.getLogger(__name__)

THROUGHPUT = 16  # messages one actor may handle before the thread turns to the next actor
_START = object()  # the first message of every pooled actor: run on_start


class Dispatcher:
    """A few threads that run pooled actors, and a bounded pool for their blocking work."""

    def __init__(self, threads: int = 2, blocking: int = 4, name: str = "pool") -> None:
        self._ready: queue.SimpleQueue[_Inbox | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._loop, name=f"{name}-{i}", daemon=True)
            for i in range(threads)
        ]
        self._blocking = concurrent.futures.ThreadPoolExecutor(
            max_workers=blocking, thread_name_prefix=f"{name}-blocking"
        )
        for thread in self._threads:
            thread.start()

    def schedule(self, inbox: _Inbox) -> None:
        self._ready.put(inbox)

    def blocking(self, work: Callable[[], Any], done: Callable[[Any], None]) -> None:
        """Run `work` on the blocking pool, then `done(result)` there (`done(exception)` if it raised).

        `done` should only `tell` an actor.
        """

        def run() -> None:
            try:
                result = work()
            except Exception as exc:  # handed to the actor, which decides what it means
                result = exc
            done(result)

        self._blocking.submit(run)

    def stop(self) -> None:
        for _ in self._threads:
            self._ready.put(None)
        for thread in self._threads:
            thread.join(timeout=5)
        self._blocking.shutdown(wait=True, cancel_futures=False)

    def _loop(self) -> None:
        while (inbox := self._ready.get()) is not None:
            try:
                inbox.run()
            except (
                BaseException
            ):  # never lose a pool thread; the actor's own failures are handled inside
                log.exception("pooled actor crashed its pool thread's loop")


class _Inbox:
    """A pooled actor's mailbox. While messages wait, the actor is on its dispatcher's queue once."""

    __slots__ = ("_actor", "_dispatcher", "_lock", "_messages", "_scheduled")

    def __init__(self, actor: PooledActor, dispatcher: Dispatcher) -> None:
        self._actor, self._dispatcher = actor, dispatcher
        self._messages: collections.deque[Envelope[Any]] = collections.deque()
        self._lock = threading.Lock()
        self._scheduled = False

    def put(self, envelope: Envelope[Any], /) -> None:
        with self._lock:
            self._messages.append(envelope)
            if self._scheduled:
                return
            self._scheduled = True
        self._dispatcher.schedule(self)

    def get(self) -> Envelope[Any]:
        return self._messages.popleft()

    def empty(self) -> bool:
        return not self._messages

    def run(self) -> None:
        """Hand the actor up to THROUGHPUT messages (on a pool thread), then yield the thread."""
        actor = self._actor
        for _ in range(THROUGHPUT):
            with self._lock:
                if not self._messages:
                    self._scheduled = False
                    return
                envelope = self._messages.popleft()
            actor._handle_envelope(envelope)
        with self._lock:
            if not self._messages:
                self._scheduled = False
                return
        self._dispatcher.schedule(self)  # more wait: to the back of the queue, for fairness


class PooledActor(pykka.Actor):
    """A pykka actor that runs on a `Dispatcher`'s threads instead of a thread of its own."""

    @staticmethod
    def _create_actor_inbox() -> Any:  # replaced in __init__: the inbox needs its actor
        return collections.deque()

    @staticmethod
    def _create_future() -> pykka.Future[Any]:
        return pykka.ThreadingFuture()

    def __init__(self, dispatcher: Dispatcher) -> None:
        super().__init__()
        self.actor_inbox = _Inbox(self, dispatcher)
        self._actor_ref = pykka.ActorRef(self)  # the ref keeps the inbox it was made with

    def _start_actor_loop(self) -> None:
        self.actor_inbox.put(Envelope(_START))

    def _handle_envelope(self, envelope: Envelope[Any]) -> None:
        """One message, as pykka's own loop handles it; on_start first, teardown once stopped."""
        if envelope.message is _START:
            self._actor_loop_setup()
        elif self.actor_stopped.is_set():
            _refuse(self, envelope)
            return
        else:
            try:
                response = self._handle_receive(envelope.message)
                if envelope.reply_to is not None:
                    envelope.reply_to.set(response)
            except Exception:
                if envelope.reply_to is not None:
                    envelope.reply_to.set_exception()
                else:
                    self._handle_failure(*sys.exc_info())
                    try:
                        self.on_failure(*sys.exc_info())
                    except Exception:
                        self._handle_failure(*sys.exc_info())
        if self.actor_stopped.is_set():
            while not self.actor_inbox.empty():
                _refuse(self, self.actor_inbox.get())


def _refuse(actor: pykka.Actor, envelope: Envelope[Any]) -> None:
    """A message for a stopped actor: its asker learns it is dead (a stop request, that it stopped)."""
    if envelope.reply_to is None:
        return
    if isinstance(envelope.message, pykka_messages._ActorStop):
        envelope.reply_to.set(None)
    else:
        dead = pykka.ActorDeadError(f"{actor.actor_ref} stopped before handling the message")
        envelope.reply_to.set_exception(exc_info=(pykka.ActorDeadError, dead, None))


def tell(ref: pykka.ActorRef[Any], message: Any) -> bool:
    """`ref.tell(message)` from a thread that must not fail for it (the reactor's, the journal's):
    False when the actor is gone."""
    try:
        ref.tell(message)
    except pykka.ActorDeadError:
        return False
    return True


def teller(ref: pykka.ActorRef[Any], message: Any) -> Callable[..., None]:
    """A callback for another thread (a timer, a process exit, a commit) that tells `ref` `message`,
    quietly when the actor is gone."""

    def callback(*_: Any) -> None:
        tell(ref, message)

    return callback
