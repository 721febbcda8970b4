"""orchctl daemon start|stop|restart|status."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

import click

from orchctl.common import handle_errors, print_json
from orchd import protocol as p
from orchd.client import Client
from orchd.errors import ErrorCode, OrchError

STOP_TIMEOUT = (
    600.0  # seconds to wait for orchd to come to rest (it waits kill_grace + 15 s at most)
)


@click.group()
def daemon() -> None:
    """Start, stop or inspect orchd.

    \b
    Example:
      orchctl daemon status --json
    """


def _daemon() -> tuple[Any, p.Pong | None]:
    """orch's paths, and the running daemon's Pong (None when nothing answers)."""
    from orchctl.connect import ping
    from orchd.paths import resolve

    paths = resolve()
    return paths, ping(paths)


@daemon.command("start")
@handle_errors
def daemon_start() -> None:
    """Start orchd in the background (no-op when it runs).

    \b
    Example:
      orchctl daemon start
    """
    from orchctl.connect import start_daemon

    paths, pong = _daemon()
    pong = pong or start_daemon(paths)
    click.echo(f"orchd is running (pid {pong.pid})")


@daemon.command("stop")
@click.option(
    "--end-sessions",
    is_flag=True,
    help="End the running sessions first (TERM, then KILL after kill_grace): their tasks run "
    "again at the next start, no retry spent.",
)
@handle_errors
def daemon_stop(end_sessions: bool) -> None:
    """Stop orchd; running sessions keep running, and the next start takes them over.

    \b
    Example:
      orchctl daemon stop
      orchctl daemon stop --end-sessions
    """
    paths, pong = _daemon()
    if pong is None and end_sessions:  # what a stopped orchd left running: an orchd ends it
        click.echo(f"orchd is not running: {_end_sessions(paths)}")
    elif pong is None:
        click.echo("orchd is not running")
    else:
        click.echo(f"orchd stopped (pid {pong.pid}): {_stop(paths, pong, end_sessions).message}")


@daemon.command("restart")
@handle_errors
def daemon_restart() -> None:
    """Stop orchd and start it again (after an upgrade, say): running sessions keep running, and
    the new orchd takes them over; no session is lost or run twice.

    \b
    Example:
      pipx upgrade orch && orchctl daemon restart
    """
    from orchctl.connect import start_daemon

    paths, pong = _daemon()
    kept = _stop(paths, pong, end_sessions=False).count if pong is not None else 0
    new = start_daemon(paths)
    was = f"pid {pong.pid} -> " if pong is not None else ""
    said = f": {kept} session{'s' * (kept != 1)} kept running, taken over" if kept else ""
    click.echo(f"orchd {new.version} running ({was}pid {new.pid}){said}")


def _stop(paths: Any, pong: p.Pong, end_sessions: bool) -> p.Done:
    """Ask orchd to stop, wait until its process is gone; what it did with the sessions."""
    with Client(paths.address) as client:
        # the reply comes once orchd is at rest: ending sessions takes up to kill_grace
        done = client.call(p.Shutdown(end_sessions=end_sessions), timeout=STOP_TIMEOUT)
    assert isinstance(done, p.Done)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if _gone(pong.pid):
            return done
        time.sleep(0.05)  # poll with a deadline: the daemon is not our child
    raise OrchError(f"orchd (pid {pong.pid}) did not stop within 30s", ErrorCode.INTERNAL)


def _end_sessions(paths: Any) -> str:
    """Run `orchd --end-sessions`: it takes over what a stopped orchd left running, ends it, and
    exits; what it says it did."""
    from orchctl.connect import daemon_env

    paths.ensure()
    with open(paths.daemon_log, "ab") as log:
        done = subprocess.run(
            [sys.executable, "-m", "orchd", "--end-sessions"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            cwd="/",
            env=daemon_env(),
            timeout=STOP_TIMEOUT,
        )
    said = done.stdout.decode(errors="replace").strip().splitlines()
    if done.returncode != 0 or not said:
        raise OrchError(
            f"orchd --end-sessions exited with code {done.returncode}; see {paths.daemon_log}",
            ErrorCode.INTERNAL,
        )
    return said[-1]


def _gone(pid: int) -> bool:
    """Whether process `pid` has ended (a zombie its parent has not reaped yet has)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rpartition(b")")[2].split()[0] in (b"Z", b"X")
    except FileNotFoundError:
        return True
    except (OSError, IndexError):  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False


@daemon.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@handle_errors
def daemon_status(as_json: bool) -> None:
    """Say whether orchd runs (exit 3 when it does not).

    \b
    Example:
      orchctl daemon status
    """
    paths, pong = _daemon()
    if pong is None:
        raise OrchError(f"orchd is not running (socket {paths.socket})", ErrorCode.UNAVAILABLE)
    if as_json:
        print_json(pong)
    else:
        click.echo(
            f"orchd {pong.version} running, pid {pong.pid}, up {time.time() - pong.started_at:.0f}s, "
            f"{pong.seq} events, socket {paths.socket}"
        )
        if pong.held:
            click.echo(pong.held)
