"""The keeper's lifeline: one small process per keeper that ends the keeper's attempts when the
keeper dies, however it dies.

The keeper starts it once, with PR_SET_PDEATHSIG = SIGTERM, and appends `+PGID` to its live file
when an attempt starts and `-PGID` before it reaps one. When the keeper dies (a SIGKILL, an OOM
kill, a crash) the kernel sends the lifeline its SIGTERM; it reads the live file and SIGKILLs the
process group of every attempt still listed, so nothing runs unobserved. A group is listed only
until its leader is reaped, and a leader not yet reaped (a zombie) keeps its group id from being
reused: no other process's group is ever signalled.

Why not PR_SET_PDEATHSIG on each attempt, as the keeper did: only the child can ask for it, so
the keeper had to fork its Python process for every attempt, where posix_spawn (vfork) costs a
fifth as much; on a 2-core VM that was 1.4 ms of CPU per attempt, half of orch's dispatch rate
(BENCHMARKS.md). The lifeline also ends what the agents started in their groups.

The keeper runs this file's text with `python -S -I -c`, so that nothing in its command line
names orch's daemon (a `pkill -f` meant for the daemon spares it). The standard library only.
"""

import ctypes
import errno
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def listed(path: str) -> set[int]:
    """The process groups the live file at `path` lists as running."""
    live: set[int] = set()
    try:
        with open(path) as lines:
            for line in lines:
                sign, number = line[:1], line[1:].strip()
                if number.isdigit():
                    (live.add if sign == "+" else live.discard)(int(number))
    except OSError:
        pass
    return live


def main(path: str, keeper: int) -> None:
    def end(*_: object) -> None:
        for group in listed(path):
            try:
                os.killpg(group, signal.SIGKILL)
            except OSError:
                pass  # it ended meanwhile
        try:
            os.unlink(path)
        except OSError:
            pass
        os._exit(0)

    signal.signal(signal.SIGTERM, end)
    # a Ctrl-C in the terminal it came from is not for it
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if os.getppid() != keeper:  # the keeper died before the handler was set
        end()
    os.write(1, b"ready\n")
    os.close(1)
    while True:
        signal.pause()


def start(live: str, cannot_run: int) -> None:
    """Start the lifeline of the calling keeper, to end the attempts listed in `live` once the keeper
    dies (PR_SET_PDEATHSIG: SIGTERM), and wait until it is ready. One fork, at the keeper's start."""
    with open(os.path.abspath(__file__)) as f:
        code = f.read()
    keeper = os.getpid()
    argv = [sys.executable, "-S", "-I", "-c", code, live, str(keeper)]
    ready, said = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        try:  # the child: no exception may leave it
            ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
            os.dup2(said, 1)
            os.execv(sys.executable, argv)
        finally:
            os._exit(cannot_run)
    os.close(said)
    with os.fdopen(ready, "rb") as answer:
        if answer.readline() != b"ready\n":
            raise OSError(errno.ECHILD, f"the lifeline (pid {pid}) did not start")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
