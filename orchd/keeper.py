"""The keeper: the parent of every local attempt, a small process that outlives orchd.

orchd asks it over a Unix socket (0600, in the 0700 runtime directory) to start
attempts. It starts each (argv, never a shell; the leader of its own process
group; output appended to its log) and watches it through a pidfd.
When one exits it kills what is left of its group, reaps it, and tells orchd,
keeping its status until orchd acknowledges it (`Ack`, once the attempt's end
is in the event log).

So an attempt's status outlives orchd: when orchd goes away, the keeper writes
every status it still holds beside its log (`TASK.N.exit`), as it does for the
attempts that end while no orchd is connected; the next orchd connects to the
same socket, learns which attempts still run (`Hello`), and reads the status of
those that ended meanwhile from their exit files. (Only then: a file per attempt
would cost a file creation on the dispatch path.) The keeper exits once it has neither
attempts nor an orchd. It is one process for all attempts, not a shell per
attempt: starting an attempt costs one vfork+exec, on the other core.

Nothing it starts runs unobserved: each attempt's process group dies with its keeper (the
lifeline, orchd/lifeline.py, ends them), so an orchd that finds its keeper dead finds no orphan
still at work, and each exit status is appended to the keeper's exits journal the moment it is
reaped, before orchd hears of it, so that a keeper killed right after has still left it behind.

Frames on the socket: a 4-byte big-endian length, then a msgpack message. The
protocol is versioned (`PROTOCOL`, in `Hello`); each version listens on a socket
of its own (`Paths.keeper_socket`), so a newer orchd finds an older keeper still
running its attempts, takes them over through it and lets it drain, while its
own keeper starts the new ones.

Run as `python -m orchd.keeper FD JOURNAL`, FD being the listening socket orchd
made, JOURNAL the exits journal to append to. It imports only the standard library, msgspec,
orchd/lifeline.py and orchd/procs.py: a keeper outlives the orchd that started it, and an
older keeper is tested as it was, its file run by path (tests/fixtures/keeper_v1.py
is orch 0.1's keeper.py). What only orchd needs of it lives in orchd/executors/keepers.py.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import struct
import sys
from typing import Union

import msgspec

from orchd import lifeline
from orchd.procs import program, start_ticks

HEADER = struct.Struct(">I")
ACCEPT_TIMEOUT = 30.0  # seconds a new keeper waits for the orchd that started it
PROTOCOL = 2  # 1: orch 0.1 (no version in Hello, no journal, attempts outlive their keeper)
# bytes the exits journal may hold before a moment with nothing unacked clears it
JOURNAL_KEEP = 64 << 10


class Spawn(msgspec.Struct, tag=True, array_like=True, gc=False):
    """orchd -> keeper: start an attempt. `stdin` is a file to read as its input (None: /dev/null)."""

    id: int
    argv: list[str]
    env: dict[str, str]
    cwd: str
    log: str
    exit: str  # where its exit status goes
    stdin: str | None = None


class Ack(msgspec.Struct, tag=True, array_like=True, gc=False):
    """orchd -> keeper: the ends of these attempts are durable in the log; forget their statuses."""

    pids: list[int]


class Ended(msgspec.Struct):
    """An attempt's end as the keeper keeps it until orchd has it."""

    status: int
    exit_path: str
    ticks: int
    log: str
    journaled: bool  # in the exits journal


class Hello(msgspec.Struct, tag=True, array_like=True, gc=False):
    """keeper -> orchd, first on every connection: the attempts still running, as (pid, start ticks, log).

    The log names the attempt: orchd may have died before it learned the pid. `version`: the
    keeper's protocol (a keeper of protocol 1 sends none).
    """

    running: list[tuple[int, int, str]]
    version: int = 1
    journal: str = ""  # its exits journal (protocol 2)


class Started(msgspec.Struct, tag=True, array_like=True, gc=False):
    id: int
    pid: int
    ticks: int


class Failed(msgspec.Struct, tag=True, array_like=True, gc=False):
    id: int
    errno: int
    message: str


class Exited(msgspec.Struct, tag=True, array_like=True, gc=False):
    """An attempt ended: `status` is its exit code, or minus the signal that killed it."""

    pid: int
    status: int


ToKeeper = Union[Spawn, Ack]
FromKeeper = Union[Hello, Started, Failed, Exited]

_encode = msgspec.msgpack.Encoder().encode


def frame(message: msgspec.Struct) -> bytes:
    body = _encode(message)
    return HEADER.pack(len(body)) + body


def frames(buffer: bytearray) -> list[bytes]:
    """Take every whole frame off the front of `buffer`."""
    out, at = [], 0
    while len(buffer) - at >= 4:
        (size,) = HEADER.unpack_from(buffer, at)
        if len(buffer) - at - 4 < size:
            break
        out.append(bytes(buffer[at + 4 : at + 4 + size]))
        at += 4 + size
    del buffer[:at]
    return out


# Python ignores these at start-up; an agent gets the defaults back, as subprocess's restore_signals does
_DEFAULTED = tuple(s for s in (signal.SIGPIPE, getattr(signal, "SIGXFSZ", None)) if s is not None)


class Keeper:
    """The keeper's loop: one thread, one epoll for the socket and every attempt's pidfd."""

    def __init__(self, listener: socket.socket, journal: str) -> None:
        self.listener = listener
        self.journal_path = journal
        # the exits journal: each status appended when reaped, before orchd hears of it
        self.journal = os.open(
            journal, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600
        )
        self.epoll = select.epoll()
        self.epoll.register(listener.fileno(), select.EPOLLIN)
        self.conn: socket.socket | None = None
        self.inbox = bytearray()
        # pidfd -> (pid, start ticks, exit file, log)
        self.children: dict[int, tuple[int, int, str, str]] = {}
        # pid -> (status, exit file): told, not yet durable
        self.unacked: dict[int, Ended] = {}
        # pid -> its end, neither journaled nor written beside its log (a full disk): the keeper
        # stays until an orchd hears of it
        self.held: dict[int, Ended] = {}
        self.programs: dict[tuple[str, str], str] = {}  # (argv[0], PATH) -> the file it names
        self.cwd = "/"
        # fds to close once the current batch of events is done
        self.closing: list[socket.socket | int] = []
        self.devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        self.decoder = msgspec.msgpack.Decoder(ToKeeper)
        # pid -> (start ticks, log), for the journal
        self._ticks_of: dict[int, tuple[int, str]] = {}
        self.nice = os.getpriority(os.PRIO_PROCESS, 0)  # the keeper's; its attempts get 0
        # what the lifeline ends should this keeper die: +PGID as an attempt starts, -PGID as it ends
        self.live_path = os.path.join(os.path.dirname(journal), f"live-{os.getpid()}.log")
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC
        self.live = os.open(self.live_path, flags, 0o600)
        lifeline.start(self.live_path, CANNOT_RUN)

    def serve(self) -> None:
        self.listener.settimeout(ACCEPT_TIMEOUT)
        try:
            self._accept()
        except OSError:
            return  # the orchd that started us is gone
        while self.conn is not None or self.children or self.held:
            for fd, _ in self.epoll.poll():
                if fd == self.listener.fileno():
                    self._accept()
                elif self.conn is not None and fd == self.conn.fileno():
                    self._read()
                elif fd in self.children:
                    self._exited(fd)
                # else: an fd closed earlier in this batch
            # closed only now, so that no number in this batch's events was reused meanwhile
            for closing in self.closing:
                closing.close() if isinstance(closing, socket.socket) else os.close(closing)
            self.closing.clear()

    def _accept(self) -> None:
        conn, _ = self.listener.accept()
        if self.conn is not None:
            # a new orchd: the old one is gone (orchd holds a lock while it lives)
            self._drop()
        conn.setblocking(True)
        self.conn = conn
        self.epoll.register(conn.fileno(), select.EPOLLIN)
        running = [(pid, ticks, log) for pid, ticks, _, log in self.children.values()]
        running += [(pid, ended.ticks, ended.log) for pid, ended in self.held.items()]
        self._send(Hello(running, PROTOCOL, self.journal_path))
        for pid, ended in self.held.items():  # told as ended the moment it is known
            self.unacked[pid] = ended
            self._send(Exited(pid, ended.status))
        self.held.clear()

    def _drop(self) -> None:
        """orchd is gone: what it had not yet made durable goes to exit files, for the next one."""
        assert self.conn is not None
        self.epoll.unregister(self.conn.fileno())
        self.closing.append(self.conn)
        self.conn, self.inbox = None, bytearray()
        for pid, ended in self.unacked.items():
            self._leave(pid, ended)
        self.unacked.clear()

    def _send(self, message: msgspec.Struct) -> None:
        if self.conn is None:
            return
        try:
            self.conn.sendall(frame(message))
        except OSError:  # orchd died: its successor learns the rest from Hello and the exit files
            self._drop()

    def _read(self) -> None:
        assert self.conn is not None
        try:
            data = self.conn.recv(1 << 20)
        except OSError:
            data = b""
        if not data:
            self._drop()
            return
        self.inbox += data
        for body in frames(self.inbox):
            try:
                request = self.decoder.decode(body)
            except msgspec.DecodeError:
                continue  # only orchd can reach this socket; a message it garbled is skipped
            if isinstance(request, Ack):
                for pid in request.pids:
                    self.unacked.pop(pid, None)
                if not self.unacked and os.fstat(self.journal).st_size > JOURNAL_KEEP:
                    os.ftruncate(self.journal, 0)  # all of it is durable in orchd's log
            else:
                self._spawn(request)

    def _spawn(self, request: Spawn) -> None:
        try:
            pid = self._start(request)
        except OSError as exc:
            self._send(Failed(request.id, exc.errno or 0, exc.strerror or str(exc)))
            return
        pidfd = os.pidfd_open(pid)
        ticks = start_ticks(pid) or 0
        self.children[pidfd] = (pid, ticks, request.exit, request.log)
        self._ticks_of[pid] = (ticks, request.log)
        self.epoll.register(pidfd, select.EPOLLIN)
        self._send(Started(request.id, pid, ticks))

    def _start(self, request: Spawn) -> int:
        log = os.open(request.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        source = self.devnull
        try:
            if request.stdin is not None:
                source = os.open(request.stdin, os.O_RDONLY | os.O_CLOEXEC)
            if request.cwd != self.cwd:
                # one thread: the working directory is ours to set before each spawn
                os.chdir(request.cwd)
                self.cwd = request.cwd
            key = (request.argv[0], request.env.get("PATH", os.defpath))
            path = self.programs.get(key)
            if path is None or not os.path.exists(path):  # looked up again when it moved
                path = program(*key)
                if os.sep not in key[0]:
                    self.programs[key] = path
            return self._exec(path, request, source, log)
        finally:
            os.close(log)
            if source != self.devnull:
                os.close(source)

    def _exec(self, path: str, request: Spawn, source: int, log: int) -> int:
        """posix_spawn the attempt: the leader of its own process group, at the usual priority,
        reading `source` and writing `log`; listed for the lifeline before anything else."""
        if self.nice:
            os.setpriority(os.PRIO_PROCESS, 0, 0)
        try:
            pid = os.posix_spawn(
                path,
                request.argv,
                request.env,
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, fd, n) for n, fd in enumerate((source, log, log))
                ],
                setpgroup=0,
                setsigdef=_DEFAULTED,
            )
        finally:
            if self.nice:
                os.setpriority(os.PRIO_PROCESS, 0, self.nice)
        self._list(b"+%d\n" % pid)
        return pid

    def _list(self, line: bytes) -> None:
        """Tell the lifeline that a group runs (+PGID) or no longer does (-PGID; b"": none does)."""
        try:
            if line:
                os.write(self.live, line)
            else:
                os.ftruncate(self.live, 0)
        except OSError as exc:  # a full disk: the attempt runs on, without its lifeline
            _say(f"cannot write {self.live_path}: {exc}")

    def _exited(self, pidfd: int) -> None:
        pid, _, exit_path, _ = self.children.pop(pidfd)
        self.epoll.unregister(pidfd)
        self.closing.append(pidfd)
        # The leader is a zombie until reaped, so its group id cannot be reused yet: end whatever
        # it left behind in its group, then reap it.
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
        # no longer the lifeline's to end (its group id may be reused once reaped); none runs: none
        self._list(b"-%d\n" % pid if self.children else b"")
        _, wait_status = os.waitpid(pid, 0)
        status = os.waitstatus_to_exitcode(wait_status)
        ticks, log = self._ticks_of.pop(pid, (0, ""))
        ended = Ended(status, exit_path, ticks, log, journaled=True)
        try:  # before anything else: a keeper killed now has still left it behind
            os.write(self.journal, f"{pid} {ticks} {status} {log}\n".encode())
        except OSError as exc:  # a full disk: the status is still told, and kept in memory
            _say(f"cannot append to the exits journal: {exc}")
            ended.journaled = False
        if self.conn is None:
            self._leave(pid, ended)
            return
        self.unacked[pid] = ended
        self._send(Exited(pid, status))

    def _leave(self, pid: int, ended: Ended) -> None:
        """No orchd hears of `ended` now: beside its log, else held until one does."""
        if not _write_status(ended.exit_path, ended.status) and not ended.journaled:
            self.held[pid] = ended


def _say(complaint: str) -> None:
    """A complaint on stderr (orchd's log), unless that cannot be written either (a full disk)."""
    try:
        os.write(2, f"orch keeper: {complaint}\n".encode())
    except OSError:
        pass


def _write_status(exit_path: str, status: int) -> bool:
    try:
        fd = os.open(exit_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, b"%d\n" % status)
        finally:
            os.close(fd)
    except OSError as exc:  # its run's directory is gone (cleaned), or the disk is full
        _say(f"cannot write {exit_path}: {exc}")
        return False
    return True


CANNOT_RUN = 126  # the exit code of an attempt whose program could not be executed


def main(argv: list[str]) -> None:
    listener = socket.socket(fileno=int(argv[0]))
    os.set_inheritable(listener.fileno(), False)
    os.chdir("/")
    try:  # reap at once, however busy the machine: a status not yet reaped dies with its keeper
        os.setpriority(os.PRIO_PROCESS, 0, -10)
    except OSError:
        pass  # not allowed (not root, no CAP_SYS_NICE): the default priority
    Keeper(listener, argv[1]).serve()


if __name__ == "__main__":
    main(sys.argv[1:])
