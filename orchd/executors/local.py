"""Run an attempt as a local process: argv only, own process group, output to a file.

The processes are the keeper's children (orchd/keeper.py), so that their exit
statuses outlive orchd; this module is the keeper's client.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import msgspec

from orchd import keeper as kp
from orchd.executors.base import (
    Process,
    Started,
    _status,
    exit_file,
    read_exit_file,
)
from orchd.keeper import start_ticks
from orchd.reactor import Reactor

log = logging.getLogger(__name__)

KEEPER_TIMEOUT = 30.0  # seconds to wait on the keeper's socket before calling it unreachable


class LocalExecutor:
    """Starts attempts on this machine through the keeper, each the leader of its own process group.

    Requests go out on the caller's thread; the keeper's replies (started, failed, exited)
    are read on the reactor thread, which calls the waiting callbacks.
    """

    def __init__(self, reactor: Reactor, socket_path: Path) -> None:
        self._reactor, self._path = reactor, socket_path
        self._lock = threading.Lock()  # guards the tables below
        self._send_lock = threading.Lock()  # one writer on the socket at a time
        self._ids = itertools.count(1)
        self._starting: dict[int, tuple[Started, Path]] = {}  # request id -> (callback, log path)
        self._inherited: dict[
            str, tuple[int, int]
        ] = {}  # log -> (pid, ticks): children of an earlier orchd
        self._watchers: dict[int, Callable[[], None]] = {}  # pid -> on_exit
        self._statuses: dict[int, int] = {}  # pid -> exit status, until reaped
        self._sock: socket.socket | None = None
        self._inbox = bytearray()
        self._decoder = msgspec.msgpack.Decoder(kp.FromKeeper)
        self._connect()

    # ------------------------------------------------------------ the keeper's socket

    def _connect(self) -> None:
        """Connect to the keeper, starting one when none answers; take its `Hello`."""
        for fresh in (False, True, True):
            if fresh:
                self._start_keeper()
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(KEEPER_TIMEOUT)
            try:
                sock.connect(str(self._path))
                inbox = bytearray()
                while not (bodies := kp.frames(inbox)):
                    data = sock.recv(1 << 16)
                    if not data:
                        raise ConnectionResetError("the keeper closed the connection")
                    inbox += data
                hello = self._decoder.decode(bodies[0])
            except (OSError, msgspec.DecodeError) as exc:
                sock.close()
                log.debug("keeper at %s: %s", self._path, exc)
                continue
            assert isinstance(hello, kp.Hello)
            with self._lock:
                self._inherited = {log: (pid, ticks) for pid, ticks, log in hello.running}
            self._sock, self._inbox = sock, inbox
            for body in bodies[1:]:
                self._handle(self._decoder.decode(body))
            self._reactor.add_reader(sock.fileno(), self._readable)
            if fresh:
                log.info("started the keeper (%s)", self._path)
            else:
                log.info(
                    "connected to the running keeper: %d attempts still run", len(hello.running)
                )
            return
        raise OSError(errno.EAGAIN, f"cannot start the keeper at {self._path}")

    def _start_keeper(self) -> None:
        """A new keeper, in a session of its own (so that it outlives orchd), on a socket made here."""
        self._path.unlink(missing_ok=True)  # a keeper that ended leaves its socket behind
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(str(self._path))
            os.chmod(self._path, 0o600)
            listener.listen(8)
            subprocess.Popen(
                [sys.executable, "-m", "orchd.keeper", str(listener.fileno())],
                pass_fds=(listener.fileno(),),
                start_new_session=True,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                cwd=Path(kp.__file__).parent.parent,
            )
        finally:
            listener.close()

    def _send(self, message: kp.Spawn | kp.Ack) -> None:
        with self._send_lock:
            if self._sock is None:
                self._connect()
            assert self._sock is not None
            self._sock.sendall(kp.frame(message))

    def _readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        try:
            data = sock.recv(1 << 20)
        except (BlockingIOError, TimeoutError):
            return
        except OSError:
            data = b""
        if not data:
            self._lost(sock)
            return
        self._inbox += data
        for body in kp.frames(self._inbox):
            self._handle(self._decoder.decode(body))

    def _handle(self, message: kp.Hello | kp.Started | kp.Failed | kp.Exited) -> None:
        if isinstance(message, kp.Exited):
            with self._lock:
                self._statuses[message.pid] = message.status
                watcher = self._watchers.pop(message.pid, None)
            if watcher is not None:
                watcher()
        elif isinstance(message, kp.Started):
            with self._lock:
                on_started, log_path = self._starting.pop(message.id)
            on_started(Process(message.pid, message.pid, message.ticks, self, log_path))
        elif isinstance(message, kp.Failed):
            with self._lock:
                on_started, _ = self._starting.pop(message.id)
            on_started(OSError(message.errno, message.message))

    def _lost(self, sock: socket.socket) -> None:
        """The keeper died under us: its attempts run on as orphans, and their statuses are lost.

        Starts waiting for an answer fail (and are retried); attempts are watched by pidfd
        from now on. The next start brings up a new keeper.
        """
        log.error("the keeper is gone: the attempts it ran are watched without their exit status")
        self._reactor.remove_reader(sock.fileno())
        sock.close()
        with self._lock:
            self._sock = None
            starting, self._starting = self._starting, {}
            watchers, self._watchers = self._watchers, {}
        for on_started, _ in starting.values():
            on_started(OSError(errno.EAGAIN, "the keeper died before it answered"))
        for pid, on_exit in watchers.items():
            if not self._reactor.on_exit(pid, on_exit):
                on_exit()

    def close(self) -> None:
        """Let go of the keeper (it ends once its attempts have)."""
        with self._send_lock:
            sock, self._sock = self._sock, None
        if sock is not None:
            self._reactor.remove_reader(sock.fileno())
            sock.close()

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
            self._send(
                kp.Spawn(
                    request_id, argv, env, cwd, str(log_path), str(exit_file(log_path)), source
                )
            )
        except OSError as exc:
            with self._lock:
                waiting = self._starting.pop(request_id, None)
            if waiting is not None:
                transient = exc.errno in (
                    None,
                    errno.EAGAIN,
                    errno.EPIPE,
                    errno.ECONNRESET,
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
        if process.handle is self:  # the keeper tells of its exit, with its status
            with self._lock:
                exited = process.pid in self._statuses
                if not exited:
                    self._watchers[process.pid] = on_exit
            if exited:
                on_exit()
            return
        if not self._reactor.on_exit(process.pid, on_exit):
            on_exit()

    def reap(self, process: Process) -> tuple[int | None, int | None]:
        if process.handle is self:
            with self._lock:
                status = self._statuses.pop(process.pid, None)
            if status is not None:
                return _status(status)
        found = read_exit_file(process.log_path) if process.log_path is not None else None
        return found if found is not None else (None, None)

    def forget(self, process: Process) -> None:
        if process.handle is self:
            try:
                self._send(kp.Ack([process.pid]))
            except OSError:
                pass  # the keeper is gone, and what it kept with it

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
        with self._lock:
            inherited = self._inherited.pop(str(log_path), None)
        if inherited is not None:  # the keeper's child: it tells of its end (if it has not already)
            pid, ticks = inherited
            return Process(pid, pid, ticks, self, log_path)
        found = None
        if known is not None and alive(known.pid, known.start_ticks):
            found = known
        elif known is None:
            found = find_attempt(run_id, task_id, attempt)
        if found is not None:
            return Process(
                found.pid, found.pgid, found.start_ticks, None, log_path
            )  # a dead keeper's orphan
        if read_exit_file(log_path) is not None:  # it ended while orchd was down: its group is gone
            return Process(known.pid if known else 0, 0, 0, log_path=log_path, ended=True)
        return None


def alive(pid: int, ticks: int) -> bool:
    """Whether the process `pid` still runs and is the one that started at `ticks`."""
    return ticks != 0 and start_ticks(pid) == ticks


def find_attempt(run_id: str, task_id: str, attempt: int) -> Process | None:
    """The keeper of an attempt that started but whose pid never reached the log (orchd died in between).

    Every attempt's environment names it (ORCH_RUN_ID, ORCH_TASK_ID, ORCH_ATTEMPT); its keeper is
    the leader of its process group.
    """
    wanted = {
        f"ORCH_RUN_ID={run_id}".encode(),
        f"ORCH_TASK_ID={task_id}".encode(),
        f"ORCH_ATTEMPT={attempt}".encode(),
    }
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                environ = set(f.read().split(b"\0"))
            pgid = os.getpgid(pid)
        except OSError:
            continue
        if wanted <= environ and pgid == pid:
            ticks = start_ticks(pid)
            if ticks:
                return Process(pid, pgid, ticks)
    return None
