"""orchctl's edges: bad plans, no daemon, autostart, hostile bytes on the socket."""

from __future__ import annotations

import hashlib
import json
import os
import random
import stat
import subprocess
import sys
from pathlib import Path

import pynng

from orchd import protocol as p
from tests.conftest import Daemon, write_plan


def orchctl(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "orchctl.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env or os.environ.copy(),
    )


def test_bad_plan_exit_2_names_the_field(orchd: Daemon, tmp_path: Path) -> None:
    plan = tmp_path / "plan.toml"
    plan.write_text(
        'name = "x"\n[defaults]\nagent = "command"\n\n[[tasks]]\nid = "a"\ncommand = ["true"]\n'
        '\n[[tasks]]\nid = "b"\npromt = "typo"\ncommand = ["true"]\n'
    )
    result = orchd.orchctl("submit", str(plan))
    assert result.returncode == 2, result
    assert "tasks[1].promt" in result.stderr and "unknown field" in result.stderr
    assert "line 11" in result.stderr or ":11:" in result.stderr
    assert json.loads(orchd.orchctl("runs", "--json", check=True).stdout)["runs"] == []


def test_bad_durations_duplicates_and_empty_plans(orchd: Daemon, tmp_path: Path) -> None:
    cases = {
        "dur": (
            {
                "defaults": {"agent": "command", "timeout": "ten minutes"},
                "tasks": [{"id": "a", "command": ["true"]}],
            },
            "timeout",
        ),
        "dup": (
            {
                "defaults": {"agent": "command"},
                "tasks": [{"id": "a", "command": ["true"]}, {"id": "a", "command": ["true"]}],
            },
            "duplicate",
        ),
        "empty": ({"tasks": []}, "no tasks"),
    }
    for name, (plan, needle) in cases.items():
        path = write_plan(tmp_path / f"{name}.json", {"workdir": str(tmp_path), **plan})
        result = orchd.orchctl("submit", str(path))
        assert result.returncode == 2, (name, result)
        assert needle in result.stderr, (name, result.stderr)


def test_no_start_without_daemon_exits_3(orch_home: Path) -> None:
    result = orchctl("--no-start", "status")
    assert result.returncode == 3
    assert "orchd is not running" in result.stderr
    env = {**os.environ, "ORCH_NO_AUTOSTART": "1"}
    assert orchctl("runs", env=env).returncode == 3


def test_autostart_and_socket_permissions(orch_home: Path, tmp_path: Path) -> None:
    plan = write_plan(
        tmp_path / "plan.json",
        {
            "workdir": str(tmp_path),
            "defaults": {"agent": "command"},
            "tasks": [{"id": "a", "command": ["true"]}],
        },
    )
    try:
        result = orchctl("submit", str(plan), "--wait", "--json")
        assert result.returncode == 0, result
        assert "started orchd" in result.stderr
        assert json.loads(result.stdout)["summary"]["state"] == "completed"
        run_dir = orch_home / "run"
        assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
        assert stat.S_IMODE((run_dir / "orchd.sock").stat().st_mode) == 0o600
        assert orchctl("daemon", "status").returncode == 0
    finally:
        assert orchctl("daemon", "stop").returncode == 0
    assert orchctl("daemon", "status").returncode == 3


def test_garbage_on_the_socket_gets_errors_and_daemon_keeps_serving(orchd: Daemon) -> None:
    rng = random.Random(7)
    address = f"ipc://{orchd.home}/run/orchd.sock"
    samples = [
        b"",
        b"\x00\xff" * 10,
        b"{",
        b"[]",
        b'{"op":"Nope"}',
        b'{"op":"Status","run":5}',
        json.dumps({"op": "Ping", "v": 99}).encode(),
        b'{"op":"Events","wait":"x"}',
    ]
    samples += [bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 300))) for _ in range(200)]
    with pynng.Req0(dial=address, recv_timeout=10_000) as sock:
        for data in samples:
            sock.send(data)
            reply = json.loads(sock.recv())
            assert reply["type"] == "Error", (data, reply)
            assert reply["code"] in ("bad_request", "version_mismatch")
    version = json.loads(_raw(address, json.dumps({"op": "Ping", "v": 99}).encode()))
    assert version["code"] == "version_mismatch"
    with orchd.client() as client:
        assert isinstance(client.call(p.Ping()), p.Pong)


def _raw(address: str, data: bytes) -> bytes:
    with pynng.Req0(dial=address, recv_timeout=10_000) as sock:
        sock.send(data)
        return sock.recv()


def test_secrets_in_orchd_environment_reach_agents_but_never_the_log(
    make_daemon, tmp_path: Path, monkeypatch
) -> None:
    secret = "sk-test-0123456789abcdef"
    monkeypatch.setenv("FAKE_PROVIDER_API_KEY", secret)
    orchd = make_daemon()
    check = (
        "import hashlib, os, sys; key = os.environ.get('FAKE_PROVIDER_API_KEY', '').encode(); "
        "sys.exit(0 if hashlib.sha256(key).hexdigest() == sys.argv[1] else 5)"
    )
    digest = hashlib.sha256(secret.encode()).hexdigest()
    plan = write_plan(
        tmp_path / "plan.json",
        {
            "workdir": str(tmp_path),
            "defaults": {"agent": "command", "max_retries": 0},
            "tasks": [{"id": "uses-key", "command": [sys.executable, "-c", check, digest]}],
        },
    )
    result = orchd.orchctl("submit", str(plan), "--wait", "--json")
    assert result.returncode == 0, result.stdout + result.stderr  # the agent saw the key
    outputs = [
        orchd.orchctl(*args, check=True).stdout
        for args in (
            ["status", "--json"],
            ["events", "--json"],
            ["replay", "--json"],
            ["runs", "--json"],
        )
    ]
    db_bytes = b"".join(p.read_bytes() for p in (orchd.home / "state").glob("events.db*"))
    assert secret.encode() not in db_bytes
    for text in outputs:
        assert secret not in text
    assert secret not in orchd.log()
