"""Run attempts on a Ray cluster: one detached actor per attempt owns the agent process on its node.

The actor (`AttemptActor`, ray_attempt.py) starts the agent (argv, own process group), keeps its output in memory and
its exit status, and answers long-polled `read(offset, wait)` calls. The daemon appends what it
reads to the attempt's log file, so `orchctl logs -f` and the adapters' classification work as on
the local executor. One daemon thread copies the output of every attempt: each read is a Ray
future whose completion queues it for that thread. The daemon and its log stay the single source
of truth: Ray's own retries are off, a dead actor (its node died) is a lost attempt.
"""

from __future__ import annotations

import errno
import logging
import os
import queue
import socket
import threading
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import ActorUnavailableError, GetTimeoutError, RayActorError, RayError

from orchd.errors import OrchError
from orchd.executors.base import Process, Started, start_on_thread
from orchd.executors.ray_attempt import AttemptActor
from orchd.paths import Paths
from orchd.reactor import Reactor

log = logging.getLogger(__name__)

LONG_POLL = 20.0  # seconds a read waits on the node for new output
NO_SLOT_WAIT = 30.0  # seconds spawn waits while no node of the cluster offers a session slot at all
CALL_TIMEOUT = 30.0  # seconds for the quick calls (start, info) once the actor is placed
UNAVAILABLE_RETRIES = (
    30  # reads of an unreachable actor, a second apart, before the attempt is lost
)


def _kill(actor: Any) -> None:
    """Kill an attempt's actor (and so free its session slot); a dead one is fine."""
    try:
        ray.kill(actor, no_restart=True)
    except (RayError, ValueError) as exc:
        log.debug("ray: kill: %s", exc)


class _Closing(Exception):
    """orchd is stopping while an attempt waits to be placed."""


class _Attempt:
    """The daemon's side of one remote attempt: its actor, how much output is copied, its exit."""

    def __init__(self, name: str, actor: Any, log_path: Path, offset: int) -> None:
        self.name, self.actor, self.log_path, self.offset = name, actor, log_path, offset
        self.lock = threading.Lock()
        self.on_exit: Callable[[], None] | None = None
        self.status: tuple[int | None, int | None] | None = None
        self.unavailable = 0

    def finish(self, status: tuple[int | None, int | None]) -> None:
        """Record the exit (once) and tell the watcher."""
        with self.lock:
            if self.status is not None:
                return
            self.status, callback = status, self.on_exit
        if callback is not None:
            callback()

    def watch(self, on_exit: Callable[[], None]) -> None:
        with self.lock:
            if self.status is None:
                self.on_exit = on_exit
                return
        on_exit()


def actor_name(run_id: str, task_id: str, attempt: int | str) -> str:
    """The name of an attempt's actor in the namespace: found again by it after a restart."""
    return f"orch-{run_id}-{task_id}-{attempt}"


def connect(address: str, namespace: str, resource: str) -> None:
    """Join the Ray cluster at `address` as a driver ("local": start a one-node cluster in orchd, for trying out).

    Raises:
        OrchError: the cluster cannot be reached.
    """
    parsed = urllib.parse.urlsplit(address if "://" in address else f"tcp://{address}")
    if address not in ("auto", "local") and parsed.hostname and parsed.port:
        try:  # ray.init retries an unreachable address for minutes: say so at once instead
            socket.create_connection((parsed.hostname, parsed.port), timeout=5).close()
        except OSError as exc:
            raise OrchError(
                f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}"
            ) from None
    # a cluster started here has no session resource unless given one: as many as orchd's default cap
    local = (
        {"resources": {resource: (os.cpu_count() or 1) * 4}, "include_dashboard": False}
        if address == "local"
        else {}
    )
    try:
        ray.init(
            address=address,
            namespace=namespace,
            ignore_reinit_error=True,
            log_to_driver=False,
            **local,
        )
    except (ConnectionError, RuntimeError, ValueError, OSError) as exc:
        raise OrchError(f"cannot reach the Ray cluster at {address}: {exc}") from None


class RayExecutor:
    """Spawns each attempt in its own detached Ray actor, placed on a node with a free session slot."""

    def __init__(self, config: Any, reactor: Reactor, paths: Paths) -> None:
        connect(config.address, config.namespace, config.session_resource)
        self._reactor, self._namespace, self._resource = (
            reactor,
            config.namespace,
            config.session_resource,
        )
        self._keeper = ray.remote(AttemptActor)
        self._options = dict(
            namespace=self._namespace,
            lifetime="detached",
            max_restarts=0,
            max_task_retries=0,
            num_cpus=0,
            resources={self._resource: 1},
        )
        self._reads: queue.SimpleQueue = queue.SimpleQueue()
        self._closing = threading.Event()
        threading.Thread(target=self._copy, name="ray-output", daemon=True).start()
        log.info(
            "sessions run on the Ray cluster at %s (%g %s)",
            config.address,
            ray.cluster_resources().get(self._resource, 0),
            self._resource,
        )

    # ------------------------------------------------------------ the Executor seam

    def start(
        self,
        argv: list[str],
        env: dict[str, str],
        cwd: str,
        log_path: Path,
        stdin: str | None,
        on_started: Started,
    ) -> None:
        start_on_thread(lambda: self.spawn(argv, env, cwd, log_path, stdin), on_started)

    def spawn(
        self,
        argv: list[str],
        env: dict[str, str],
        cwd: str,
        log_path: Path,
        stdin: str | None = None,
    ) -> Process:
        """Start `argv` in a new actor on a node with a free session slot; output goes to `log_path`.

        Blocks until the actor is placed and the process started: while every slot of the cluster
        is taken (orchd's max_sessions above the cluster's capacity), or until `close()`, after
        which the attempt is lost (and retried without spending a retry by the next orchd).

        Raises:
            OSError: the program cannot be started on the node, or no node offers a slot at all (EAGAIN).
        """
        os.close(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600))
        name = actor_name(
            env.get("ORCH_RUN_ID", "-"), env.get("ORCH_TASK_ID", "-"), env.get("ORCH_ATTEMPT", "-")
        )
        try:
            actor = self._keeper.options(name=name, **self._options).remote()
        except ValueError as exc:  # a stale actor holds the name
            raise OSError(errno.EAGAIN, f"Ray actor {name}: {exc}") from None
        started = actor.start.remote(argv, env, cwd, stdin)
        try:
            reply = self._placed(started)
        except (
            RayActorError,
            _Closing,
        ):  # its node died before the process started, or orchd stops: lost
            _kill(actor)
            return Process(
                0, 0, 0, self._attempt(name, actor, log_path, status=(None, None)), log_path
            )
        except BaseException:
            _kill(actor)
            raise
        if reply[0] == "error":
            _kill(actor)
            raise OSError(reply[1], reply[2])
        _, pid, pgid, ticks, _node = reply
        return Process(pid, pgid, ticks, self._attempt(name, actor, log_path), log_path)

    def watch(self, process: Process, on_exit: Callable[[], None]) -> None:
        process.handle.watch(on_exit)

    def forget(self, process: Process) -> None:
        pass  # an attempt's actor goes when it is reaped

    def reap(self, process: Process) -> tuple[int | None, int | None]:
        attempt: _Attempt = process.handle
        _kill(attempt.actor)
        return attempt.status if attempt.status is not None else (None, None)

    def signal(self, process: Process, sig: int) -> None:
        attempt: _Attempt = process.handle
        if attempt.status is None:
            attempt.actor.signal.remote(int(sig))

    def find(
        self, run_id: str, task_id: str, attempt: int, known: Process | None, log_path: Path
    ) -> Process | None:
        name = actor_name(run_id, task_id, attempt)
        try:
            actor = ray.get_actor(name, namespace=self._namespace)
        except ValueError:
            return None
        try:
            found = ray.get(actor.info.remote(), timeout=CALL_TIMEOUT)
        except (RayError, GetTimeoutError):
            found = None
        if found is None:  # dead, unreachable, or orchd died before it started the process
            _kill(actor)
            return None
        pid, pgid, ticks, _node = found
        try:
            offset = log_path.stat().st_size
        except FileNotFoundError:
            offset = 0
        return Process(
            pid, pgid, ticks, self._attempt(name, actor, log_path, offset=offset), log_path
        )

    # ------------------------------------------------------------ placement and output

    def capacity(self) -> int:
        """Sessions the cluster runs at once: the sum of its nodes' session resource."""
        return int(ray.cluster_resources().get(self._resource, 0))

    def close(self) -> None:
        """orchd stops: attempts still waiting for a node give up (they are lost, not failed)."""
        self._closing.set()

    def _placed(self, started: Any) -> tuple[Any, ...]:
        """The reply of `start`, once the actor is placed (a slot of its node is free)."""
        without_slots = 0.0
        while True:
            ready, _ = ray.wait([started], timeout=1.0)
            if ready:
                return ray.get(started, timeout=CALL_TIMEOUT)
            if self._closing.is_set():
                raise _Closing()
            without_slots = without_slots + 1.0 if self.capacity() < 1 else 0.0
            if without_slots >= NO_SLOT_WAIT:
                raise OSError(
                    errno.EAGAIN,
                    f"no node of the Ray cluster offers {self._resource} (for "
                    f"{without_slots:g}s; each node declares how many sessions it takes)",
                )

    def _attempt(
        self,
        name: str,
        actor: Any,
        log_path: Path,
        offset: int = 0,
        status: tuple[int | None, int | None] | None = None,
    ) -> _Attempt:
        attempt = _Attempt(name, actor, log_path, offset)
        if status is not None:
            attempt.finish(status)
        else:
            self._read(attempt)
        return attempt

    def _read(self, attempt: _Attempt) -> None:
        """Ask the actor for output past what is copied; the reply is queued for the copying thread."""
        future = attempt.actor.read.remote(attempt.offset, LONG_POLL).future()
        future.add_done_callback(lambda f: self._reads.put((attempt, f)))

    def _copy(self) -> None:
        """The one thread that appends every attempt's output to its log file and notices exits."""
        while True:
            attempt, future = self._reads.get()
            try:
                self._copied(attempt, future)
            except Exception:  # a bug here must not stop the output of every other attempt
                log.exception("ray: copying the output of %s failed", attempt.name)
                attempt.finish((None, None))

    def _copied(self, attempt: _Attempt, future: Any) -> None:
        try:
            start, data, ended, code, sig = future.result()
        except ActorUnavailableError:
            attempt.unavailable += 1
            if attempt.unavailable < UNAVAILABLE_RETRIES:
                self._reactor.call_later(1.0, lambda: self._read(attempt))
                return
            log.warning(
                "ray: %s unreachable for %ds: the attempt is lost",
                attempt.name,
                UNAVAILABLE_RETRIES,
            )
            attempt.finish((None, None))
            return
        except (
            RayError
        ) as exc:  # the actor died (its node died, or it was killed): the status is lost
            log.warning(
                "ray: %s died: %s", attempt.name, (str(exc) or type(exc).__name__).splitlines()[0]
            )
            attempt.finish((None, None))
            return
        attempt.unavailable = 0
        if data:
            fd = os.open(
                attempt.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600
            )
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
        attempt.offset = start + len(data)
        if ended:
            attempt.finish((code, sig))
        else:
            self._read(attempt)
