"""orchd: the long-lived daemon. Replays the log, resumes unfinished runs, serves clients."""

from __future__ import annotations

import argparse
import fcntl
import gc
import logging
import os
import signal
import sys
import threading
import time
import tomllib
from typing import Annotated, Any, Literal

import msgspec
import pykka

from orchd import __version__, store
from orchd import events as ev
from orchd import state as st
from orchd.actors.context import Context
from orchd.actors.messages import Settle, Settled
from orchd.actors.pool import Dispatcher, tell
from orchd.actors.supervisor import SupervisorActor
from orchd.dispatch import stopped
from orchd.errors import OrchError
from orchd.executors.base import Executor
from orchd.executors.local import LocalExecutor
from orchd.inotify import Growth
from orchd.journal import Journal
from orchd.notify import Notifier, NotifyConfig, cursor_file
from orchd.paths import Paths, resolve
from orchd.reactor import Reactor
from orchd.server import Server

log = logging.getLogger("orchd")

SESSION_THREADS = 2  # the session actors' shared pool (1 measured slower on 2 cores)
SETTLE_TIME = 10.0  # seconds a stop waits for the launches already recorded to start
END_TIME = 15.0  # seconds past kill_grace a stop --end-sessions waits for their ends to be recorded


class RayConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """`[ray]` in config.toml: the cluster sessions run on when `executor = "ray"`."""

    address: str = (
        "auto"  # "auto", "ray://host:port", or "local" (start a cluster in-process: tests only)
    )
    namespace: str = "orch"
    session_resource: str = (
        "orch_session"  # each session takes one; nodes declare how many they run
    )


class DashboardConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """`[dashboard]` in config.toml: where `orchctl dashboard` serves the page."""

    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 0  # on 127.0.0.1; 0: a free port


class Config(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The daemon's config.toml."""

    executor: Literal["local", "ray"] = (
        "local"  # where sessions run: this machine, or a Ray cluster
    )
    ray: RayConfig = msgspec.field(default_factory=RayConfig)
    dashboard: DashboardConfig = msgspec.field(default_factory=DashboardConfig)
    notify: NotifyConfig = msgspec.field(default_factory=NotifyConfig)

    max_sessions: int = (os.cpu_count() or 1) * 4  # global cap on sessions running at once
    kill_grace: float = 5.0  # seconds between TERM and KILL
    server_workers: int = 16
    max_message_bytes: int = 16 << 20
    # a provider held until the user acts (rejected credentials, billing): its waiting tasks wait
    # ("wait": `orchctl retry RUN` releases them once fixed) or fail at once with the reason ("fail")
    on_provider_hold: Literal["wait", "fail"] = "wait"
    max_runs: int = (
        10_000  # runs the log holds (all are in memory); a submit past it is refused; 0: no limit
    )


def load_config(paths: Paths) -> Config:
    """Read config.toml; a missing file means defaults."""
    try:
        text = paths.config_file.read_text()
    except FileNotFoundError:
        return Config()
    try:
        config = msgspec.convert(tomllib.loads(text), Config)
    except (tomllib.TOMLDecodeError, msgspec.ValidationError) as exc:
        raise OrchError(f"{paths.config_file}: {exc}") from None
    config.notify.check(paths.config_file)
    return config


def make_executor(config: Config, reactor: Reactor, paths: Paths) -> Executor:
    """The executor config.toml chooses; ray is imported only when chosen."""
    if config.executor == "local":
        return LocalExecutor(reactor, paths.runtime_dir, paths.state_dir / "keepers")
    try:
        from orchd.executors.ray import RayExecutor
    except ImportError as exc:
        raise OrchError(f"executor = \"ray\" needs Ray: pip install 'orch[ray]' ({exc})") from None
    return RayExecutor(config.ray, reactor, paths)


def _lock(paths: Paths) -> Any:
    """Hold the daemon lock for the life of the process, or exit if another orchd holds it."""
    handle = open(paths.lock, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"orchd: already running (lock {paths.lock} is held)", file=sys.stderr)
        sys.exit(1)
    return handle


class Daemon:
    """The parts of one orchd, started in order and stopped in reverse."""

    def __init__(self, paths: Paths, config: Config, end_sessions: bool = False) -> None:
        self.paths, self.config = paths, config
        self.end_sessions = end_sessions  # started only to end what a stopped orchd left running
        self.stopping = threading.Event()
        self._settling = threading.Lock()
        self._settled: tuple[int, int] | None = None  # (sessions left running, sessions ended)

    def start(self) -> Daemon:
        paths = self.paths
        paths.ensure()
        self._lock = _lock(paths)
        threading.stack_size(
            512 << 10
        )  # one thread per actor (a run, the supervisor): small stacks
        self.conn, applied, read_only = store.open_log(paths.db)
        if applied:
            log.info("migrated the log: %s", ", ".join(applied))
        state = store.fold(self.conn)
        gc.freeze()  # what the log held is here to stay: later collections need not walk it
        log.info("orchd %s: replayed %d events, %d runs", __version__, state.seq, len(state.runs))
        self.journal = Journal(self.conn, state, paths.db if read_only else None).start()
        if read_only:
            log.warning("the event log cannot be written now (a full disk?): it is read, and held")
        # before anything is recorded: a first start without a cursor begins at the replayed end
        self.notifier: Notifier | None = None
        if self.config.notify.wanted:
            self.notifier = Notifier(self.config.notify, self.journal, paths).start()
        else:  # notifications turned on later start from their moment, not from here
            cursor_file(paths).unlink(missing_ok=True)
        running = running_attempts(state)
        started = ev.DaemonStarted(
            "", __version__, os.getpid(), running, st.previous_daemon(state.daemon)
        )
        self.journal.append([started])  # before the runs record what they take over
        self.reactor = Reactor().start()
        self.dispatcher = Dispatcher(threads=SESSION_THREADS, blocking=4, name="sessions")
        self.ctx = Context(
            paths=paths,
            journal=self.journal,
            reactor=self.reactor,
            executor=make_executor(self.config, self.reactor, paths),
            dispatcher=self.dispatcher,
            growth=Growth(self.reactor),
            kill_grace=self.config.kill_grace,
        )
        self.supervisor = SupervisorActor.start(
            self.ctx, self.config.max_sessions, self.config.on_provider_hold == "fail"
        )
        self.ctx.supervisor = self.supervisor
        self.ctx.stopping = self.end_sessions  # then it takes the sessions over, and starts none
        unfinished = [r.run_id for r in state.runs.values() if r.state == "running"]
        self.supervisor.proxy().resume(unfinished).get()
        self.server = Server(
            self.ctx,
            self.stopping.set,
            settle=self.settle,
            workers=self.config.server_workers,
            max_message=self.config.max_message_bytes,
            max_runs=self.config.max_runs,
            dashboard_port=self.config.dashboard.port,
        ).start()

        log.info("listening on %s (pid %d)", paths.address, os.getpid())
        return self

    def settle(self, end_sessions: bool) -> tuple[int, int]:
        """Bring orchd to rest before it stops, and say how: (sessions left running, sessions
        ended). Nothing starts any more; every launch already recorded gets its process (so that
        none is durable without one, which the next start would record lost); with
        `end_sessions`, every session is ended (TERM, then KILL after kill_grace) and recorded
        interrupted. Otherwise sessions keep running under the keeper, for the next start to take
        over. Once: a later call (SIGTERM during `orchctl daemon stop`) gets the first answer."""
        with self._settling:
            if self._settled is None:
                self._settled = self._settle(end_sessions)
            return self._settled

    def _settle(self, end: bool) -> tuple[int, int]:
        self.ctx.stopping = True  # read by the supervisor and the runs: no launch from here on
        wait = self.config.kill_grace + END_TIME if end else SETTLE_TIME
        deadline = time.monotonic() + wait
        replies = []
        for ref in list(self.ctx.runs.values()):
            reply: pykka.ThreadingFuture[Settled] = pykka.ThreadingFuture()
            if tell(ref, Settle(end, reply)):
                replies.append(reply)
        ended = 0
        for reply in replies:
            try:
                ended += reply.get(timeout=max(0.0, deadline - time.monotonic())).ended
            except pykka.Timeout:
                log.warning("a run did not come to rest within %gs; stopping anyway", wait)
        with self.journal.lock:
            left = running_attempts(self.journal.state)
        return left, ended

    def stop(self) -> None:
        log.info("stopping")
        _, ended = self.settle(end_sessions=False)
        self.server.stop()
        if self.notifier is not None:
            self.notifier.stop()
        self.supervisor.stop()
        getattr(
            self.ctx.executor, "close", lambda: None
        )()  # a remote executor lets go of waiting sessions
        pykka.ActorRegistry.stop_all()
        self.dispatcher.stop()
        with self.journal.lock:  # what ended since it settled is in the fold by now, or it runs on
            left = running_attempts(self.journal.state)
        self.journal.append([ev.DaemonStopped("", __version__, os.getpid(), left, ended)])
        self.journal.stop()  # writes what is queued: DaemonStopped last
        if ended:
            log.info("stopped: %d sessions ended (interrupted: run again at the next start)", ended)
        if left:
            log.info("stopped: %d sessions keep running under the keeper for the next start", left)
        self.reactor.stop()
        self.conn.close()
        self.paths.socket.unlink(missing_ok=True)
        self._lock.close()


def running_attempts(state: st.State) -> int:
    """Attempts the log shows running (in the runs that have not finished)."""
    return sum(
        1
        for run in state.runs.values()
        if run.state == "running"
        for task in run.tasks.values()
        if task.current is not None
    )


def run(paths: Paths, config: Config, end_sessions: bool = False) -> None:
    """Run the daemon until SIGTERM/SIGINT or a Shutdown request; with `end_sessions`, only take
    over the sessions a stopped orchd left running, end them, say so on stdout, and stop."""
    daemon = Daemon(paths, config, end_sessions)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: daemon.stopping.set())
    daemon.start()
    if end_sessions:
        print(stopped(*daemon.settle(end_sessions=True)), flush=True)
    else:
        while not daemon.stopping.wait(3600):
            pass
    daemon.stop()


def main(argv: list[str] | None = None) -> None:
    """Entry point of `orchd`."""
    parser = argparse.ArgumentParser(
        prog="orchd", description="The orch daemon (runs in the foreground)."
    )
    parser.add_argument("--version", action="version", version=f"orchd {__version__}")
    parser.add_argument("--log-level", default=os.environ.get("ORCH_LOG_LEVEL", "INFO"))
    parser.add_argument(
        "--end-sessions",
        action="store_true",
        help="take over the sessions a stopped orchd left running, end them (TERM, then KILL; "
        "their tasks run again at the next start), and exit",
    )
    args = parser.parse_args(argv)
    logging.logThreads = (
        False  # no thread names in records: commits of worktrees run on bare threads (session.py)
    )
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    paths = resolve()
    try:
        run(paths, load_config(paths), args.end_sessions)
    except OrchError as exc:
        print(f"orchd: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
