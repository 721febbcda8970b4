"""The keepers as orchd sees them: where each protocol's keeper listens, how orchd starts one, a
connection to one (`KeeperLink`), and the exit statuses their exits journals hold.

The keeper itself (orchd/keeper.py) is one program on its own; the local executor (local.py)
speaks to it through what is here.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from orchd import keeper as kp

KEEPER = ("-m", "orchd.keeper")  # how python runs a keeper of this version: `KEEPER FD JOURNAL`
JOURNAL_AGE = 7 * 86400.0  # seconds a dead keeper's exits journal is kept


def keeper_socket(runtime: Path, version: int) -> Path:
    """Where a keeper of protocol `version` listens (protocol 1: orch 0.1's `keeper.sock`)."""
    return runtime / ("keeper.sock" if version == 1 else f"keeper-{version}.sock")


class KeeperLink:
    """One connection to a keeper: its socket, what it said it runs, what it still must hear."""

    def __init__(self, sock: socket.socket, hello: kp.Hello, inbox: bytearray, path: Path) -> None:
        self.sock, self.inbox, self.path = sock, inbox, path
        self.version = hello.version
        self.journal = getattr(hello, "journal", "")
        self.running = {pid for pid, _, _ in hello.running}
        self.unacked: set[int] = set()  # ended attempts whose end is not durable yet
        self.draining = False  # an older keeper: it starts nothing more, and goes when empty
        self.lock = threading.Lock()  # one writer on the socket at a time

    def send(self, message: kp.Spawn | kp.Ack) -> None:
        with self.lock:
            self.sock.sendall(kp.frame(message))

    @property
    def idle(self) -> bool:
        return not self.running and not self.unacked


def start_keeper(path: Path, journals: Path) -> None:
    """A new keeper, in a session of its own (so that it outlives orchd), on a socket made here."""
    path.unlink(missing_ok=True)  # a keeper that ended leaves its socket behind
    journal = journals / f"exits-{time.time_ns()}.log"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(str(path))
        os.chmod(path, 0o600)
        listener.listen(8)
        subprocess.Popen(
            [sys.executable, *KEEPER, str(listener.fileno()), str(journal)],
            pass_fds=(listener.fileno(),),
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            cwd=Path(kp.__file__).parent.parent,
        )
    finally:
        listener.close()


def read_journals(journals: Path) -> dict[str, tuple[int, int, int]]:
    """Every exit status that keepers journaled in `journals` (a keeper that died left its own
    behind), by attempt log; a journal older than JOURNAL_AGE is deleted once read."""
    found: dict[str, tuple[int, int, int]] = {}
    now = time.time()
    for path in sorted(journals.glob("exits-*.log")):
        found.update(read_journal(str(path)))
        try:
            if now - path.stat().st_mtime > JOURNAL_AGE:
                path.unlink()
        except OSError:
            pass
    return found


def read_journal(path: str) -> dict[str, tuple[int, int, int]]:
    """The statuses an exits journal holds, by attempt log: (pid, start ticks, status), from the
    lines the keeper appends as it reaps (`PID TICKS STATUS LOG`)."""
    found: dict[str, tuple[int, int, int]] = {}
    try:
        with open(path, "rb") as f:
            for line in f:
                parts = line.decode("utf-8", "replace").rstrip("\n").split(" ", 3)
                if len(parts) == 4 and parts[0].isdigit():
                    try:
                        found[parts[3]] = (int(parts[0]), int(parts[1]), int(parts[2]))
                    except ValueError:
                        continue  # a line cut by a crash mid-write
    except OSError:
        pass
    return found
