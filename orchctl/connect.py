"""Reaching orchd: connect, and start it in the background when none answers (as tmux does)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from orchd.client import Client
from orchd.errors import ErrorCode, OrchError
from orchd.paths import Paths, resolve
from orchd.protocol import Ping, Pong

START_TIMEOUT = 20.0


def autostart_allowed(no_start: bool) -> bool:
    return not no_start and os.environ.get("ORCH_NO_AUTOSTART", "") not in ("1", "true", "yes")


def connect(*, autostart: bool = True, timeout: float = 30.0) -> Client:
    """A client of the running orchd; start one first if allowed and none answers."""
    paths = resolve()
    try:
        return Client(paths.address, timeout)
    except OrchError:
        if not autostart:
            raise OrchError(
                f"orchd is not running (nothing answers on {paths.socket}); start it with "
                "`orchctl daemon start`, or drop --no-start / ORCH_NO_AUTOSTART",
                ErrorCode.UNAVAILABLE,
            ) from None
    pong = start_daemon(paths)
    print(f"orchctl: started orchd (pid {pong.pid}; log {paths.daemon_log})", file=sys.stderr)
    return Client(paths.address, timeout)


def ping(paths: Paths) -> Pong | None:
    """The daemon's Pong, or None when nothing answers."""
    try:
        with Client(paths.address, timeout=5.0) as client:
            reply = client.call(Ping())
    except OrchError:
        return None
    return reply if isinstance(reply, Pong) else None


def daemon_env() -> dict[str, str]:
    """The environment of an orchd started from here: this one (its agents inherit it), with
    ORCH_HOME made absolute (relative to here, not to the daemon's "/")."""
    env = dict(os.environ)
    if env.get("ORCH_HOME"):
        env["ORCH_HOME"] = str(Path(env["ORCH_HOME"]).expanduser().absolute())
    return env


def start_daemon(paths: Paths) -> Pong:
    """Start orchd detached from this terminal and wait until it answers."""
    paths.ensure()
    with open(paths.daemon_log, "ab") as log:
        # cwd "/": the daemon must not keep the user's directory busy
        proc = subprocess.Popen(
            [sys.executable, "-m", "orchd"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            close_fds=True,
            cwd="/",
            env=daemon_env(),
        )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        pong = ping(paths)
        if pong is not None:
            return pong
        try:
            code = proc.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            continue
        pong = ping(paths)  # another orchd won the race for the lock: use it
        if pong is not None:
            return pong
        raise OrchError(
            f"orchd exited with code {code} while starting; see {paths.daemon_log}",
            ErrorCode.UNAVAILABLE,
        )
    raise OrchError(
        f"orchd did not answer within {START_TIMEOUT:g}s; see {paths.daemon_log}",
        ErrorCode.UNAVAILABLE,
    )
