"""A newer orchd meets an older keeper that still runs agents of a run in the log (an upgrade of
orch, then a restart): it takes them over through that keeper and never kills them, starts new
attempts on a keeper of its own protocol, and the old keeper exits once it has drained.

The older keeper is orch 0.1's (tests/fixtures/keeper_v1.py, keeper protocol 1), started by an
orchd that speaks protocol 1 to it (tests/fixtures/orchd_v1.py); the newer one is today's
(orchd/keeper.py, protocol 2).
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

from orchd.keeper import PROTOCOL
from tests.conftest import ROOT, keepers, wait_until
from tests.integration.test_restart import (
    consistent,
    events,
    finished,
    gated,
    running_pids,
    stop,
    submit,
    tasks,
)
from tests.integration.test_spine import gone

ORCHD_V1 = [sys.executable, str(ROOT / "tests" / "fixtures" / "orchd_v1.py")]


def parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])


def cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def test_a_newer_orchd_lets_an_older_keeper_drain(
    make_daemon, tmp_path: Path, orch_home: Path
) -> None:
    assert PROTOCOL == 2  # the two versions this test is about
    old_gate, new_gate = tmp_path / "old-gate", tmp_path / "new-gate"
    orchd = make_daemon(command=ORCHD_V1)
    (tmp_path / "old").mkdir()
    old_run = submit(orchd, tmp_path / "old", gated(old_gate, 3))
    old_pids = wait_until(lambda: running_pids(orchd, old_run, 3), what="the old run's agents")
    (old_keeper,) = keepers(orch_home)
    assert "keeper_v1.py" in cmdline(old_keeper)
    assert {parent(pid) for pid in old_pids} == {old_keeper}
    assert (orch_home / "run" / "keeper.sock").exists()  # protocol 1's socket
    assert "3 sessions keep running" in stop(orchd)

    orchd.command = [sys.executable, "-m", "orchd"]  # the upgrade: today's orchd
    orchd.start()
    wait_until(
        lambda: sum(e["kind"] == "AttemptAdopted" for e in events(orchd, old_run)) == 3,
        what="the new orchd to take the old keeper's agents over",
    )
    (tmp_path / "new").mkdir()
    new_run = submit(orchd, tmp_path / "new", gated(new_gate, 2))
    new_pids = wait_until(lambda: running_pids(orchd, new_run, 2), what="the new run's agents")
    (new_keeper,) = set(keepers(orch_home)) - {old_keeper}
    assert "orchd.keeper" in cmdline(new_keeper)
    assert {parent(pid) for pid in new_pids} == {new_keeper}  # new attempts: the new keeper's
    assert {parent(pid) for pid in old_pids} == {old_keeper}  # the old ones: still the old one's

    old_gate.touch()
    wait_until(lambda: finished(orchd, old_run), what="the old run to finish")
    wait_until(lambda: gone(old_keeper), what="the old keeper to exit once drained")
    assert not any(gone(pid) for pid in new_pids)  # the new keeper's agents run on
    new_gate.touch()
    wait_until(lambda: finished(orchd, new_run), what="the new run to finish")

    for run_id in (old_run, new_run):  # never killed: each agent ran once, to its end
        assert {
            (t["state"], t["attempts"], t["exit_code"]) for t in tasks(orchd, run_id).values()
        } == {("completed", 1, 0)}
    log = events(orchd)
    versions = [(e["kind"], e["event"]["version"]) for e in log if e["kind"].startswith("Daemon")]
    assert versions == [
        ("DaemonStarted", "0.1.0+keeper1"),
        ("DaemonStopped", "0.1.0+keeper1"),
        ("DaemonStarted", "0.1.0"),
    ]
    kinds = collections.Counter(e["kind"] for e in log)
    assert kinds["AttemptLaunching"] == 5 and kinds["AttemptAdopted"] == 3
    consistent(orchd)
