"""The keeper (orchd/keeper.py) through its client, the local executor: real processes, a real socket.

The keeper is the parent of every local attempt and must keep their exit statuses
for an orchd that dies: these tests play the part of orchd with the executor alone
(connect, start, watch, reap, forget, disconnect) and check what a new orchd finds.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import threading
from pathlib import Path

import pytest

from orchd.executors.keepers import KeeperLink
from orchd.executors.local import LocalExecutor, Process, read_exit_file
from orchd.procs import alive, start_ticks
from orchd.reactor import Reactor
from tests.conftest import AGENTS, wait_until


class Orchd:
    """The executor's side of one orchd: a reactor and a connection to the keeper."""

    def __init__(self, home: Path) -> None:
        self.home = home
        (home / "run").mkdir(mode=0o700, exist_ok=True)
        (home / "logs").mkdir(exist_ok=True)
        self.reactor = Reactor().start()
        self.executor = LocalExecutor(self.reactor, home / "run", home / "keepers")

    def start(
        self,
        argv: list[str],
        name: str,
        stdin: str | None = None,
        cwd: str | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> Process:
        started: list = []
        done = threading.Event()

        def on_started(result: Process | OSError) -> None:
            started.append(result)
            done.set()

        env = {**os.environ, **(extra_env or {})}
        self.executor.start(argv, env, cwd or str(self.home), self.log(name), stdin, on_started)
        assert done.wait(30), "the keeper did not answer"
        if isinstance(started[0], OSError):
            raise started[0]
        return started[0]

    def wait(self, process: Process) -> tuple[int | None, int | None]:
        exited = threading.Event()
        self.executor.watch(process, exited.set)
        assert exited.wait(30), f"process {process.pid} did not end"
        return self.executor.reap(process)

    def log(self, name: str) -> Path:
        return self.home / "logs" / f"{name}.1.log"

    def close(self) -> None:
        """As orchd stopping or dying: the connection goes, nothing is acknowledged."""
        self.executor.close()
        self.reactor.stop()


@pytest.fixture
def orchd(tmp_path: Path):
    made: list[Orchd] = []

    def make() -> Orchd:
        made.append(Orchd(tmp_path))
        return made[-1]

    yield make
    for o in made:
        o.close()


def keeper_pid(home: Path) -> int | None:
    """The keeper serving `home`: found by its command line, among this process's children (a
    keeper of some other orchd on the machine is not ours)."""
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                cmdline = Path(f"/proc/{name}/cmdline").read_bytes().split(b"\0")
                parent = int(Path(f"/proc/{name}/stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if (
                b"orchd.keeper" in cmdline
                and parent == os.getpid()
                and alive(int(name), start_ticks(int(name)) or 0)
            ):
                return int(name)
    return None


def test_exit_codes_signals_cwd_and_stdin(orchd, tmp_path: Path) -> None:
    o = orchd()
    assert o.wait(o.start(["sh", "-c", "exit 3"], "code")) == (3, None)
    sleeper = o.start(["sleep", "30"], "sleep")
    o.executor.signal(sleeper, signal.SIGTERM)
    assert o.wait(sleeper) == (None, signal.SIGTERM)
    (tmp_path / "here").mkdir()
    p = o.start(
        [sys.executable, "-c", "import os, sys; print(os.getcwd(), sys.stdin.read())"],
        "io",
        stdin="from stdin",
        cwd=str(tmp_path / "here"),
    )
    assert o.wait(p) == (0, None)
    assert o.log("io").read_text() == f"{tmp_path / 'here'} from stdin\n"
    assert oct(o.log("io").stat().st_mode & 0o777) == "0o600"


def test_an_agent_gets_default_signals_and_its_own_group(orchd) -> None:
    o = orchd()
    p = o.start(
        ["grep", "SigIgn", "/proc/self/status"], "sig"
    )  # dispositions as inherited through exec
    assert o.wait(p) == (0, None)
    ignored = int(o.log("sig").read_text().split()[1], 16)
    assert not ignored & (1 << (signal.SIGPIPE - 1)), (
        "the agent inherited Python's SIG_IGN for SIGPIPE"
    )
    group = o.start(["sh", "-c", "cut -d' ' -f5 /proc/$$/stat"], "pgid")  # its process group
    assert o.wait(group) == (0, None)
    assert int(o.log("pgid").read_text()) == group.pid  # the leader of its own process group


def test_what_an_agent_leaves_in_its_group_is_killed_when_it_exits(orchd, tmp_path: Path) -> None:
    o = orchd()
    pidfile = tmp_path / "child.pid"
    p = o.start(["sh", "-c", f"sleep 60 & echo $! > {pidfile}; exit 0"], "bg")
    assert o.wait(p) == (0, None)
    child = int(pidfile.read_text())
    wait_until(
        lambda: (
            not Path(f"/proc/{child}").exists()
            or "Z" in Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0]
        ),
        what="the agent's background child to be killed",
    )


def test_a_program_that_is_not_there_fails_to_start_with_a_clear_reason(orchd) -> None:
    o = orchd()
    with pytest.raises(FileNotFoundError) as caught:
        o.start(["no-such-agent-xyz", "--flag"], "missing")
    assert caught.value.errno == errno.ENOENT
    assert "not found (is it installed" in caught.value.strerror
    with pytest.raises(OSError):
        o.start(["true"], "badcwd", cwd="/no/such/dir")
    assert o.wait(o.start(["true"], "after")) == (0, None)  # the keeper goes on serving


def test_statuses_outlive_orchd(orchd, tmp_path: Path) -> None:
    """orchd dies with one attempt running and one ended but not yet durable; the next orchd gets both."""
    gate = tmp_path / "gate"
    first = orchd()
    running = first.start(
        ["sh", "-c", f"while [ ! -e {gate} ]; do sleep 0.02; done; exit 7"], "running"
    )
    ended = first.start(["sh", "-c", "exit 5"], "ended")
    assert first.wait(ended) == (5, None)  # told, never acknowledged (its end is not "durable")
    keeper = keeper_pid(tmp_path)
    first.close()
    # the keeper writes what it had not been told was durable
    assert wait_until(lambda: read_exit_file(first.log("ended"))) == (5, None)
    assert read_exit_file(first.log("running")) is None

    second = orchd()
    assert keeper_pid(tmp_path) == keeper  # the same keeper
    adopted = second.executor.find("r", "running", 1, running, first.log("running"))
    assert adopted is not None and isinstance(
        adopted.handle, KeeperLink
    )  # the keeper's child: it will tell
    assert adopted.pid == running.pid
    gate.touch()
    assert second.wait(adopted) == (7, None)
    second.executor.forget(adopted)
    second.close()
    wait_until(
        lambda: keeper_pid(tmp_path) is None, what="the keeper to exit with nothing left to keep"
    )
    assert read_exit_file(first.log("running")) is None  # acknowledged: no file needed


def test_an_attempt_that_ends_while_no_orchd_listens_leaves_its_status(
    orchd, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    first = orchd()
    p = first.start(["sh", "-c", f"while [ ! -e {gate} ]; do sleep 0.02; done; exit 9"], "late")
    first.close()
    gate.touch()
    assert wait_until(lambda: read_exit_file(first.log("late"))) == (9, None)
    wait_until(lambda: keeper_pid(tmp_path) is None, what="the keeper to exit")
    second = orchd()  # a new keeper; the old attempt is found by its file
    found = second.executor.find("r", "late", 1, p, first.log("late"))
    assert found is not None and found.ended
    assert second.wait(found) == (9, None)


def test_a_dead_keepers_attempts_die_with_it_and_a_new_keeper_takes_over(
    orchd, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    o = orchd()
    doomed = o.start(["sh", "-c", f"while [ ! -e {gate} ]; do sleep 0.02; done"], "doomed")
    exited = threading.Event()
    o.executor.watch(doomed, exited.set)
    old = keeper_pid(tmp_path)
    assert old is not None
    os.kill(old, signal.SIGKILL)
    assert exited.wait(30), "an attempt outlived its keeper"  # nothing runs unobserved
    assert not alive(doomed.pid, doomed.start_ticks)
    assert o.executor.reap(doomed) == (None, None)  # its status died with its keeper: not made up
    fresh = wait_until(lambda: _try_start(o), what="a start through a new keeper")
    assert o.wait(fresh) == (0, None)
    assert keeper_pid(tmp_path) not in (None, old)


def test_a_status_reaped_just_before_the_keeper_died_is_in_its_journal(
    orchd, tmp_path: Path
) -> None:
    first = orchd()
    p = first.start(["sh", "-c", "exit 5"], "quick")
    assert first.wait(p) == (5, None)  # told, never acknowledged (orchd dies now)
    keeper = keeper_pid(tmp_path)
    first.close()
    os.kill(keeper, signal.SIGKILL)  # and its keeper with it, before it wrote an exit file
    wait_until(lambda: keeper_pid(tmp_path) is None, what="the keeper to be gone")
    second = orchd()
    found = second.executor.find("r", "quick", 1, p, first.log("quick"))
    assert found is not None and found.ended
    assert second.executor.reap(found) == (5, None)


def test_an_attempts_group_dies_with_its_keeper(orchd, tmp_path: Path) -> None:
    """The lifeline ends the process group of every attempt of a keeper killed with SIGKILL: the
    agent and what it started in its group, though both ignore SIGTERM."""
    first = orchd()
    pidfile = tmp_path / "pids"
    p = first.start([sys.executable, str(AGENTS / "hang.py"), str(pidfile)], "hang")
    wait_until(pidfile.exists, what="the agent and its child to start")
    agent_pid, child_pid = map(int, pidfile.read_text().split())
    keeper = keeper_pid(tmp_path)
    first.close()
    os.kill(keeper, signal.SIGKILL)
    wait_until(lambda: not alive(agent_pid, p.start_ticks), what="the agent to die with its keeper")
    wait_until(lambda: _gone(child_pid), what="its child to die with it")


def test_what_a_dead_keepers_attempt_left_outside_its_group_is_ended(orchd, tmp_path: Path) -> None:
    first = orchd()
    pidfile = tmp_path / "pids"
    env = {"ORCH_RUN_ID": "r", "ORCH_TASK_ID": "hang", "ORCH_ATTEMPT": "1"}
    argv = [sys.executable, str(AGENTS / "hang.py"), str(pidfile), "--leave-group"]
    p = first.start(argv, "hang", extra_env=env)
    wait_until(pidfile.exists, what="the agent and its child to start")
    agent_pid, child_pid = map(int, pidfile.read_text().split())
    keeper = keeper_pid(tmp_path)
    first.close()
    os.kill(keeper, signal.SIGKILL)
    wait_until(lambda: not alive(agent_pid, p.start_ticks), what="the agent to die with its keeper")
    assert not _gone(child_pid)  # its child left the group: it lives on, as an orphan
    second = orchd()
    assert second.executor.find("r", "hang", 1, p, first.log("hang")) is None
    assert _gone(child_pid)  # ended before anything of its task runs again


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


def _try_start(o: Orchd) -> Process | None:
    try:
        return o.start(["true"], "fresh")
    except OSError as exc:
        assert exc.errno == errno.EAGAIN, exc  # the keeper died before answering: worth retrying
        return None


def test_an_attempt_whose_pid_orchd_never_learned_is_found_by_its_log(
    orchd, tmp_path: Path
) -> None:
    """orchd died between asking for the start and recording the pid; the attempt ends after the next
    orchd connected (so no exit file) but before that orchd looked for it: its status still arrives."""
    gate = tmp_path / "gate"
    first = orchd()
    p = first.start(["sh", "-c", f"while [ ! -e {gate} ]; do sleep 0.02; done; exit 4"], "unknown")
    first.close()
    second = orchd()
    gate.touch()
    wait_until(lambda: not alive(p.pid, p.start_ticks), what="the attempt to end")
    found = second.executor.find("r", "unknown", 1, None, second.log("unknown"))
    assert found is not None and found.pid == p.pid
    assert second.wait(found) == (4, None)
