"""What the systemd unit does to running agents, done as systemd does it, with the unit's own
settings (systemd/orchd.service): `systemctl --user stop` (and so `restart`) signals orchd alone
(KillMode=process, KillSignal), and the sessions keep running for the next start;
`systemctl --user kill` signals every process of the unit, orchd, the keeper and the agents, in
the order of the unit's cgroup (by pid); the next start runs what was lost again, without spending
a retry, and no task runs twice at once.

systemd itself is not needed: what it does to the processes is a few signals, sent here."""

from __future__ import annotations

import collections
import os
import signal
from pathlib import Path

import pytest

from tests.conftest import ROOT, Daemon, wait_until
from tests.integration.test_crash import _keeper
from tests.integration.test_restart import (
    consistent,
    events,
    finished,
    gated,
    running_pids,
    submit,
    tasks,
)
from tests.integration.test_spine import gone


def unit_settings() -> dict[str, str]:
    """The [Service] settings of the unit file (the last value of each, as systemd reads it)."""
    settings: dict[str, str] = {}
    section = ""
    for line in (ROOT / "systemd" / "orchd.service").read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            settings[key] = value
    return settings


def unit_processes(orchd: Daemon, home: Path, agents: list[int]) -> list[int]:
    """The processes of the unit's cgroup: orchd, its keeper and the agents, by pid."""
    assert orchd.proc is not None
    keeper = _keeper(home)
    assert keeper is not None
    return sorted({orchd.proc.pid, keeper, *agents})


def test_systemctl_stop_and_restart_leave_the_sessions_to_the_next_start(
    make_daemon, tmp_path: Path
) -> None:
    unit = unit_settings()
    assert unit["KillMode"] == "process"  # what the rest relies on: stop signals orchd alone
    gate = tmp_path / "gate"
    orchd = make_daemon()
    run_id = submit(orchd, tmp_path, gated(gate, 3))
    pids = wait_until(lambda: running_pids(orchd, run_id, 3), what="three sessions to run")

    assert orchd.proc is not None  # systemctl --user restart orchd: stop, then start
    orchd.proc.send_signal(signal.Signals[unit["KillSignal"]])
    orchd.proc.wait(timeout=float(unit["TimeoutStopSec"].rstrip("s")))  # before systemd's KILL
    assert not any(gone(pid) for pid in pids)
    orchd.start()
    gate.touch()
    wait_until(lambda: finished(orchd, run_id), what="the run to finish")
    assert {t["state"]: t["attempts"] for t in tasks(orchd, run_id).values()} == {"completed": 1}
    kinds = collections.Counter(e["kind"] for e in events(orchd))
    assert kinds["AttemptAdopted"] == 3 and kinds["DaemonStopped"] == 1
    consistent(orchd)


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGKILL"])  # systemctl kill, and kill -s KILL
def test_systemctl_kill_ends_every_process_and_the_next_start_runs_the_tasks_again(
    make_daemon, tmp_path: Path, orch_home: Path, sig: str
) -> None:
    gate = tmp_path / "gate"
    orchd = make_daemon()
    run_id = submit(orchd, tmp_path, gated(gate, 4))  # three run, one waits for a slot
    agents = wait_until(lambda: running_pids(orchd, run_id, 3), what="three sessions to run")

    for pid in unit_processes(orchd, orch_home, agents):  # systemctl --user kill [-s KILL] orchd
        os.kill(pid, signal.Signals[sig])
    assert orchd.proc is not None
    orchd.proc.wait(timeout=30)
    for pid in agents:  # none outlives the unit
        wait_until(lambda pid=pid: gone(pid), timeout=10, what=f"agent {pid} to end")

    orchd.start()  # Restart=on-failure after a KILL; `systemctl --user start orchd` after a TERM
    gate.touch()
    wait_until(lambda: finished(orchd, run_id), what="the run to finish")
    view = tasks(orchd, run_id)
    # max_retries 0: an attempt killed with the unit is lost (orch's trouble): no retry spent
    assert [t["state"] for t in view.values()] == ["completed"] * 4
    assert sorted(t["attempts"] for t in view.values()) == [1, 2, 2, 2]
    finished_as = [e["event"]["outcome"] for e in events(orchd) if e["kind"] == "AttemptFinished"]
    assert collections.Counter(finished_as) == {"lost": 3, "success": 4}
    consistent(orchd)
