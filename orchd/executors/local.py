"""Run an attempt as a local process: argv only, own process group, output to a file.

The processes are the keeper's children (orchd/keeper.py), so that their exit
statuses outlive orchd; this module is the keeper's client. It speaks to one
keeper of its own protocol version, which starts new attempts, and to any older
keeper still running attempts of an earlier orchd, which it lets drain: it takes
their attempts over through it, starts nothing there, and lets it go once its
last attempt's end is durable (then the old keeper exits by itself).
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import msgspec

from orchd import keeper as kp
from orchd.executors.base import (
    UNANSWERED,
    Process,
    Started,
    _status,
    exit_file,
    read_exit_file,
)
from orchd.executors.keepers import (
    KeeperLink,
    keeper_socket,
    read_journal,
    read_journals,
    start_keeper,
)
from orchd.executors.orphans import Orphans
from orchd.reactor import Reactor

log = logging.getLogger(__name__)

KEEPER_TIMEOUT = 30.0  # seconds to wait on the keeper's socket before calling it unreachable


class LocalExecutor:
    """Starts attempts on this machine through the keeper, each the leader of its own process group.

    Requests go out on the caller's thread; the keepers' replies (started, failed, exited)
    are read on the reactor thread, which calls the waiting callbacks.
    """

    def __init__(self, reactor: Reactor, runtime: Path, journals: Path | None = None) -> None:
        self._reactor, self._runtime = reactor, runtime
        self._journals = journals if journals is not None else runtime / "keepers"
        self._journals.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock = threading.Lock()  # guards the tables below
        self._connecting = threading.Lock()
        self._ids = itertools.count(1)
        self._starting: dict[int, tuple[Started, Path]] = {}  # request id -> (callback, log path)
        self._inherited: dict[
            str, tuple[int, int, KeeperLink]
        ] = {}  # log -> children of earlier orchds
        self._watchers: dict[int, Callable[[], None]] = {}  # pid -> on_exit
        self._statuses: dict[int, int] = {}  # pid -> exit status, until reaped
        # log -> (pid, ticks, status): every exit status that keepers journaled
        self._journaled: dict[str, tuple[int, int, int]] = read_journals(self._journals)
        self._current: KeeperLink | None = None  # the keeper that starts new attempts
        self._links: list[KeeperLink] = []
        self._orphans = Orphans()
        self._connect()
        for version in range(1, kp.PROTOCOL):
            self._drain(keeper_socket(runtime, version))

    # ------------------------------------------------------------ keepers

    def _hello(self, path: Path) -> KeeperLink | None:
        """A connection to the keeper listening at `path` and its `Hello`, or None."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(KEEPER_TIMEOUT)
        try:
            sock.connect(str(path))
            inbox = bytearray()
            while not (bodies := kp.frames(inbox)):
                data = sock.recv(1 << 16)
                if not data:
                    raise ConnectionResetError("the keeper closed the connection")
                inbox += data
            hello = msgspec.msgpack.decode(bodies[0], type=kp.FromKeeper)
        except (OSError, msgspec.DecodeError) as exc:
            sock.close()
            log.debug("keeper at %s: %s", path, exc)
            return None
        if not isinstance(hello, kp.Hello):
            sock.close()
            return None
        link = KeeperLink(sock, hello, bytearray(), path)
        with self._lock:
            for pid, ticks, attempt_log in hello.running:
                self._inherited[attempt_log] = (pid, ticks, link)
            self._links.append(link)
        for body in bodies[1:]:
            self._handle(link, msgspec.msgpack.decode(body, type=kp.FromKeeper))
        self._reactor.add_reader(sock.fileno(), lambda: self._readable(link))
        return link

    def _connect(self) -> KeeperLink:
        """The keeper of this protocol: the running one, or a new one."""
        with self._connecting:
            if self._current is not None:
                return self._current
            path = keeper_socket(self._runtime, kp.PROTOCOL)
            for fresh in (False, True, True):
                if fresh:
                    start_keeper(path, self._journals)
                link = self._hello(path)
                if link is None:
                    continue
                if link.journal:
                    self._journaled.update(read_journal(link.journal))
                log.info(
                    "%s the keeper (protocol %d): %d attempts run under it",
                    "started" if fresh else "connected to",
                    link.version,
                    len(link.running),
                )
                self._current = link
                return link
            raise OSError(errno.EAGAIN, f"cannot start the keeper at {path}")

    def _drain(self, path: Path) -> None:
        """An older keeper, if one still runs attempts: take them over through it, start none."""
        if not path.exists():
            return
        link = self._hello(path)
        if link is None:
            return
        link.draining = True
        log.info(
            "an older keeper (protocol %d) runs %d attempts: they finish under it",
            link.version,
            len(link.running),
        )
        self._let_go_if_idle(link)

    def _readable(self, link: KeeperLink) -> None:
        try:
            data = link.sock.recv(1 << 20)
        except (BlockingIOError, TimeoutError):
            return
        except OSError:
            data = b""
        if not data:
            self._lost(link)
            return
        link.inbox += data
        for body in kp.frames(link.inbox):
            self._handle(link, msgspec.msgpack.decode(body, type=kp.FromKeeper))

    def _handle(
        self, link: KeeperLink, message: kp.Hello | kp.Started | kp.Failed | kp.Exited
    ) -> None:
        if isinstance(message, kp.Exited):
            with self._lock:
                self._statuses[message.pid] = message.status
                watcher = self._watchers.pop(message.pid, None)
                link.running.discard(message.pid)
                link.unacked.add(message.pid)
            if watcher is not None:
                watcher()
        elif isinstance(message, kp.Started):
            with self._lock:
                on_started, log_path = self._starting.pop(message.id)
                link.running.add(message.pid)
            on_started(Process(message.pid, message.pid, message.ticks, link, log_path))
        elif isinstance(message, kp.Failed):
            with self._lock:
                on_started, _ = self._starting.pop(message.id)
            on_started(OSError(message.errno, message.message))

    def _lost(self, link: KeeperLink) -> None:
        """A keeper died under us: its attempts die with it (they cannot outlive it), and their
        statuses are what its exits journal holds. Starts waiting for an answer fail (and are
        retried); the next start brings up a new keeper."""
        log.error("the keeper (protocol %d) is gone: its attempts end with it", link.version)
        self._reactor.remove_reader(link.sock.fileno())
        link.sock.close()
        if link.journal:
            self._journaled.update(read_journal(link.journal))
        self._orphans = Orphans()  # what its attempts left is looked for afresh (find)
        with self._lock:
            if link in self._links:
                self._links.remove(link)
            if self._current is link:
                self._current = None
                starting, self._starting = self._starting, {}
            else:
                starting = {}
            watchers = {
                pid: self._watchers.pop(pid) for pid in link.running if pid in self._watchers
            }
        for on_started, _ in starting.values():
            on_started(OSError(UNANSWERED, "the keeper died before it answered"))
        for pid, on_exit in watchers.items():
            if not self._reactor.on_exit(pid, on_exit):
                on_exit()

    def _let_go_if_idle(self, link: KeeperLink) -> None:
        """A draining keeper with nothing left to tell: close it (it exits once it runs nothing)."""
        if link.draining and link.idle:
            with self._lock:
                if link in self._links:
                    self._links.remove(link)
            self._reactor.remove_reader(link.sock.fileno())
            link.sock.close()
            log.info("the older keeper (protocol %d) has drained", link.version)

    def close(self) -> None:
        """Let go of the keepers (each ends once its attempts have)."""
        with self._lock:
            links, self._links, self._current = self._links, [], None
        for link in links:
            self._reactor.remove_reader(link.sock.fileno())
            link.sock.close()

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
        """Ask the keeper to start `argv` (never through a shell) with its output appended to `log_path`.

        `stdin` is written to a file beside the log (0600) that the process reads as its input.
        """
        request_id = next(self._ids)
        with self._lock:
            self._starting[request_id] = (on_started, log_path)
        try:
            source = None
            if stdin is not None:
                path = log_path.with_suffix(".stdin")
                with open(
                    os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600), "w"
                ) as f:
                    f.write(stdin)
                source = str(path)
            spawn = kp.Spawn(
                request_id, argv, env, cwd, str(log_path), str(exit_file(log_path)), source
            )
            (self._current or self._connect()).send(spawn)
        except OSError as exc:
            log.warning("cannot ask the keeper to start %s: %s", log_path.name, exc)
            with self._lock:
                waiting = self._starting.pop(request_id, None)
            if waiting is not None:
                # a keeper that died while this was sent (its socket closed under us: EBADF)
                transient = exc.errno in (
                    None,
                    errno.EAGAIN,
                    errno.EPIPE,
                    errno.ECONNRESET,
                    errno.ECONNREFUSED,
                    errno.ENOTCONN,
                    errno.EBADF,
                    errno.ENOSPC,
                )
                on_started(
                    exc
                    if not transient
                    else OSError(errno.EAGAIN, f"the keeper is unreachable: {exc}")
                )

    def watch(self, process: Process, on_exit: Callable[[], None]) -> None:
        if process.ended:
            on_exit()
            return
        if isinstance(process.handle, KeeperLink):  # the keeper tells of its exit, with its status
            with self._lock:
                exited = process.pid in self._statuses or process.handle not in self._links
                if not exited:
                    self._watchers[process.pid] = on_exit
            if exited:
                on_exit()
            return
        if not self._reactor.on_exit(process.pid, on_exit):
            on_exit()

    def reap(self, process: Process) -> tuple[int | None, int | None]:
        with self._lock:
            status = self._statuses.pop(process.pid, None)
        if status is not None:
            return _status(status)
        if process.log_path is not None:
            journaled = self._journaled.get(str(process.log_path))
            if journaled is not None and journaled[0] == process.pid:
                return _status(journaled[2])
        found = read_exit_file(process.log_path) if process.log_path is not None else None
        return found if found is not None else (None, None)

    def forget(self, process: Process) -> None:
        link = process.handle
        if not isinstance(link, KeeperLink):
            return
        with self._lock:
            link.unacked.discard(process.pid)
        try:
            link.send(kp.Ack([process.pid]))
        except OSError:
            pass  # the keeper is gone, and what it kept with it
        self._let_go_if_idle(link)

    def signal(self, process: Process, sig: int) -> None:
        if process.pgid <= 0:
            return
        try:
            os.killpg(process.pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def find(
        self, run_id: str, task_id: str, attempt: int, known: Process | None, log_path: Path
    ) -> Process | None:
        """After a restart: the attempt as a keeper still runs it; or ended, with the status a
        keeper journaled or left beside its log; else None, once whatever is left of it (an orphan
        of a keeper of orch 0.1, what its process group left) has been ended."""
        with self._lock:
            inherited = self._inherited.pop(str(log_path), None)
        if inherited is not None:  # a keeper's child: it tells of its end (if it has not already)
            pid, ticks, link = inherited
            return Process(pid, pid, ticks, link, log_path)
        self._orphans.end(run_id, task_id, attempt, known)
        journaled = self._journaled.get(str(log_path))
        if journaled is not None:
            return Process(journaled[0], 0, journaled[1], log_path=log_path, ended=True)
        if read_exit_file(log_path) is not None:  # it ended while orchd was down: its group is gone
            return Process(known.pid if known else 0, 0, 0, log_path=log_path, ended=True)
        return None


__all__ = [
    "LocalExecutor",
    "Process",
    "read_exit_file",
    "signal",
]
