"""orchctl daemon start|stop|status."""

from __future__ import annotations

import os
import time
from typing import Any

import click

from orchctl.common import handle_errors, print_json
from orchd import protocol as p
from orchd.errors import ErrorCode, OrchError


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
@handle_errors
def daemon_stop() -> None:
    """Stop orchd; running agents are stopped and retried when it starts again.

    \b
    Example:
      orchctl daemon stop
    """
    paths, pong = _daemon()
    if pong is None:
        click.echo("orchd is not running")
        return
    with p.Client(paths.address) as client:
        client.call(p.Shutdown())
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pong.pid, 0)
        except ProcessLookupError:
            click.echo(f"orchd stopped (pid {pong.pid})")
            return
        time.sleep(0.05)  # poll with a deadline: the daemon is not our child
    raise OrchError(f"orchd (pid {pong.pid}) did not stop within 30s", ErrorCode.INTERNAL)


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
