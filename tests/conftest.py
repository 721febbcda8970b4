"""Shared fixtures: every test gets its own ORCH_HOME; `orchd` fixtures run the real daemon."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
AGENTS = ROOT / "tests" / "agents"


def wait_until(
    predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.02, what: str = ""
) -> Any:
    """Poll `predicate` until it returns something truthy, or fail after `timeout` (a deadline, not a sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


def keepers(home: Path) -> list[int]:
    """The pids of the keepers of ORCH_HOME `home`, of any version (found by their command lines,
    which name their exits journals under it)."""
    found = []
    for pid, cmdline in _processes():
        if any(b"keeper" in arg for arg in cmdline[:3]) and any(
            arg.startswith(bytes(home)) for arg in cmdline
        ):
            found.append(pid)
    return found


def daemons(home: Path) -> list[int]:
    """The pids of the orchd processes of ORCH_HOME `home` (`orchctl daemon restart` starts one
    that no Daemon here holds), found by their environment."""
    found = []
    mark = b"ORCH_HOME=" + bytes(home) + b"\0"
    for pid, cmdline in _processes():
        if any(arg.endswith(b"orchd") or arg.endswith(b"orchd_v1.py") for arg in cmdline[:3]):
            try:
                if mark in Path(f"/proc/{pid}/environ").read_bytes():
                    found.append(pid)
            except OSError:
                continue
    return found


def _processes() -> Iterator[tuple[int, list[bytes]]]:
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                yield int(name), Path(f"/proc/{name}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue


@pytest.fixture(autouse=True)
def orch_home(monkeypatch: pytest.MonkeyPatch) -> Path:
    """A short private ORCH_HOME (it holds a unix socket, whose path length is limited)."""
    home = Path(tempfile.mkdtemp(prefix="orch-"))
    monkeypatch.setenv("ORCH_HOME", str(home))
    monkeypatch.delenv("ORCH_NO_AUTOSTART", raising=False)
    yield home
    # a stopped orchd leaves its sessions running under the keeper: end them with it (each
    # agent dies with its keeper), and any orchd no Daemon here stopped
    for pid in [*daemons(home), *keepers(home)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    shutil.rmtree(home, ignore_errors=True)


def _toml(value: Any) -> str:
    """A config value as TOML: a dict is an inline table (`ray = {address = "..."}`), the rest JSON."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


class Daemon:
    """A real orchd process in ORCH_HOME, driven through orchctl or the Client."""

    def __init__(
        self, home: Path, config: dict[str, Any], command: list[str] | None = None
    ) -> None:
        self.home = home
        self.config = config
        self.command = command or [sys.executable, "-m", "orchd"]  # what starts it
        self.proc: subprocess.Popen | None = None
        self.env = {**os.environ, "ORCH_HOME": str(home)}

    def write_config(self) -> None:
        path = self.home / "config" / "config.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{k} = {_toml(v)}\n" for k, v in self.config.items()))

    def start(self) -> Daemon:
        self.write_config()
        log = open(self.home / "orchd-test.log", "ab")
        self.proc = subprocess.Popen(
            self.command,
            env=self.env,
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        wait_until(self.ping, timeout=30, what="orchd to answer")
        return self

    def ping(self) -> bool:
        from orchd.client import Client
        from orchd.errors import OrchError
        from orchd.protocol import Ping

        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"orchd exited with {self.proc.returncode}: {self.log()}")
        try:
            with Client(f"ipc://{self.home}/run/orchd.sock", timeout=2) as client:
                client.call(Ping())
            return True
        except OrchError:
            return False

    def client(self, timeout: float = 30.0) -> Any:
        from orchd.client import Client

        return Client(f"ipc://{self.home}/run/orchd.sock", timeout=timeout)

    def orchctl(
        self, *args: str, check: bool = False, timeout: float = 120, input: str | None = None
    ) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, "-m", "orchctl.main", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"orchctl {' '.join(args)} -> {result.returncode}\n{result.stdout}\n{result.stderr}"
            )
        return result

    def kill(self) -> None:
        """SIGKILL the daemon (a crash)."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log(self) -> str:
        try:
            return (self.home / "orchd-test.log").read_text()[-4000:]
        except OSError:
            return ""


@pytest.fixture
def make_daemon(orch_home: Path) -> Callable[..., Daemon]:
    """Start real orchd processes; all are stopped at the end of the test."""
    started: list[Daemon] = []

    def make(command: list[str] | None = None, **config: Any) -> Daemon:
        config.setdefault("max_sessions", 16)
        config.setdefault("kill_grace", 1.0)
        daemon = Daemon(orch_home, config, command).start()
        started.append(daemon)
        return daemon

    yield make
    for daemon in started:
        daemon.stop()


@pytest.fixture
def orchd(make_daemon: Callable[..., Daemon]) -> Daemon:
    """One real orchd with the default test config."""
    return make_daemon()


def write_plan(path: Path, plan: dict[str, Any]) -> Path:
    """Write a JSON plan file."""
    path.write_text(json.dumps(plan))
    return path


def agent(name: str, *args: str) -> list[str]:
    """argv of a fake agent script from tests/agents/."""
    return [sys.executable, str(AGENTS / f"{name}.py"), *args]


def no_git_identity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A HOME with no git configuration at all, as on a fresh machine or for a service user."""
    for name in ("home", "xdg"):
        (tmp_path / name).mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for name in (
        "GIT_AUTHOR_NAME",
        "GIT_AUTHOR_EMAIL",
        "GIT_COMMITTER_NAME",
        "GIT_COMMITTER_EMAIL",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("EMAIL", raising=False)
