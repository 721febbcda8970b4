"""Access and secrets: only orchd's user gets in; secrets in orchd's environment reach agents, nothing else.

A secret in the daemon's environment must reach the agent process, and must
never appear in the event log's bytes (database, WAL), in any `--json` output,
in orchd's own log, or in an error message. Other users are kept out twice:
by the 0600 socket in a 0700 directory, and by the peer's uid on each connection.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import struct
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from orchd.server import admits
from tests.conftest import Daemon, wait_until, write_plan

SECRET = "sekrit-4f1d2c9a8b7e"
NOBODY = 65534
# prints whether it has the key (never the key); exits 0 only when it is there
HAS_KEY = (
    "import os, sys; ok = os.environ.get('FOO_API_KEY') == sys.argv[1][::-1]; "
    "print('FOO_API_KEY present: ' + ('yes' if ok else 'no')); sys.exit(0 if ok else 1)"
)


def test_secret_reaches_the_agent_and_nothing_else(
    make_daemon: Callable[..., Daemon], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FOO_API_KEY", SECRET)
    orchd = make_daemon()
    plan = write_plan(
        tmp_path / "plan.json",
        {
            "name": "secrets",
            "workdir": str(tmp_path),
            "defaults": {"agent": "command", "max_retries": 0},
            "tasks": [
                {
                    "id": "has-key",
                    "command": [sys.executable, "-c", HAS_KEY, SECRET[::-1]],
                },  # argv is logged
                {"id": "missing", "command": [str(tmp_path / "no-such-agent")]},
            ],
        },
    )
    result = orchd.orchctl("submit", str(plan), "--wait", "--json")
    assert result.returncode == 1, result  # `missing` fails, on purpose
    results = json.loads(orchd.orchctl("results", "last", "--json", check=True).stdout)
    assert "FOO_API_KEY present: yes" in json.dumps(results)  # the agent had it
    outputs = [result.stdout, result.stderr, json.dumps(results)]
    for args in (
        ["status", "--json"],
        ["status", "last", "--json"],
        ["events", "--json"],
        ["replay", "--json"],
        ["runs", "--json"],
        ["why", "last", "missing"],
        ["why", "last", "has-key"],
        ["audit"],
    ):
        outputs.append(orchd.orchctl(*args, check=True).stdout)
    # error messages: a plan naming the secret's variable, a bad run, a bad task
    bad = write_plan(
        tmp_path / "bad.json",
        {
            "workdir": str(tmp_path),
            "defaults": {"agent": "command"},
            "tasks": [{"id": "a", "command": ["true"], "env": {"FOO_API_KEY": SECRET}}],
        },
    )
    refused = orchd.orchctl("submit", str(bad))
    assert refused.returncode == 2 and "env.FOO_API_KEY: looks like a secret" in refused.stderr, (
        refused
    )
    outputs += [refused.stdout, refused.stderr]
    for args in (["status", "no-such-run"], ["logs", "last", "no-such-task"]):
        failed = orchd.orchctl(*args)
        assert failed.returncode != 0, (args, failed)
        outputs += [failed.stdout, failed.stderr]
    for text in outputs:
        assert SECRET not in text
    db_bytes = b"".join(path.read_bytes() for path in (orchd.home / "state").glob("events.db*"))
    assert db_bytes and SECRET.encode() not in db_bytes
    assert SECRET not in orchd.log()


def _nng_ping(path: str) -> str:
    """Ping orchd speaking nng's ipc wire format by hand (no pynng: this runs in a forked child).

    Returns "answered", "closed" (the connection was dropped), or "denied" (the socket's mode).
    """
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(path)
            sock.sendall(b"\x00SP\x00\x00\x30\x00\x00")  # SP header, protocol req0 (0x30)
            body = b"\x80\x00\x00\x01" + b'{"op":"Ping"}'  # req0 request id, then the request
            sock.sendall(b"\x01" + struct.pack(">Q", len(body)) + body)
            received = b""
            while len(received) < 8 + 9:
                chunk = sock.recv(4096)
                if not chunk:
                    return "closed"
                received += chunk
            return "answered"
    except PermissionError:
        return "denied"
    except (TimeoutError, ConnectionError):
        return "closed"


def _as_user(uid: int, path: str) -> str:
    """`_nng_ping` in a child process that runs as `uid`."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child only makes system calls, then leaves without cleanup
        outcome = "error"
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            outcome = _nng_ping(path)
        finally:
            os.write(write_end, outcome.encode())
            os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    with os.fdopen(read_end, "rb") as reader:
        return reader.read().decode()


def test_admits_only_the_daemons_own_uid() -> None:
    assert admits(1000, 1000) and admits(0, 0)
    assert not admits(0, 1000) and not admits(NOBODY, 0) and not admits(1001, 1000)
    assert admits(None, 1000)  # nng cannot tell on this platform: the 0600 socket is the guard


@pytest.mark.skipif(os.getuid() != 0, reason="acting as another user needs root")
def test_other_users_are_kept_out(orchd: Daemon) -> None:
    run_dir = orchd.home / "run"
    path = str(run_dir / "orchd.sock")
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert _as_user(os.getuid(), path) == "answered"  # the hand-made client works
    assert _as_user(NOBODY, path) == "denied"  # the directory's mode keeps others out
    # with the modes opened up, the peer's uid still does
    for where, mode in ((orchd.home, 0o711), (run_dir, 0o711), (Path(path), 0o666)):
        os.chmod(where, mode)
    assert _as_user(NOBODY, path) == "closed"
    wait_until(
        lambda: f"refused a connection from uid {NOBODY}" in orchd.log(),
        timeout=10,
        what="the warning",
    )
    assert _as_user(os.getuid(), path) == "answered"
