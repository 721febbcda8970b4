"""The Ray executor against a real orchd and a local multi-node Ray cluster (tests/ray/conftest.py).

Sessions spread over the worker nodes within each node's cap, cancel leaves nothing behind, a node
that dies loses no task, a restarted orchd re-attaches to living actors, and the log has the same
shape as on the local executor.
"""

from __future__ import annotations

import collections
import json
import os
from pathlib import Path
from typing import Any

import pytest

from orchd import protocol as p
from tests.conftest import Daemon, agent, wait_until, write_plan
from tests.integration.test_worktree import make_repo, run_plan
from tests.ray.conftest import RayCluster, node_args, ray_or_skip

ray_or_skip()


def node_agent(notes: Path, seconds: float, code: int = 0) -> list[str]:
    """The `record` fake agent, which notes the node it ran on too."""
    return agent("record", str(notes), str(seconds), str(code))


def read_notes(notes: Path) -> list[tuple[str, str, str, str, float]]:
    """(what, task, attempt, node, monotonic time) of every note the fake agents wrote."""
    rows = []
    for line in notes.read_text().splitlines():
        what, task, attempt, mono, _wall, _pid, node = line.split()
        rows.append((what, task, attempt, node, float(mono)))
    return rows


def peaks_by_node(notes: Path) -> dict[str, int]:
    """The most agents alive at once on each node, from their own start/end notes."""
    points: dict[str, list[tuple[float, int]]] = collections.defaultdict(list)
    for what, _task, _attempt, node, mono in read_notes(notes):
        points[node].append((mono, 1 if what == "start" else -1))
    peaks = {}
    for node, marks in points.items():
        live = peak = 0
        for _, delta in sorted(marks):  # at equal times an end (-1) comes first
            live += delta
            peak = max(peak, live)
        peaks[node] = peak
    return peaks


def submit(daemon: Daemon, plan: Path, wait: bool = False) -> dict[str, Any]:
    args = ["submit", str(plan), "--json"] + (["--wait"] if wait else [])
    result = daemon.orchctl(*args, timeout=300)
    assert result.stdout, result.stderr + daemon.log()
    return json.loads(result.stdout)


def run_state(daemon: Daemon, run_id: str) -> str:
    with daemon.client() as client:
        return client.call(p.Status(run=run_id)).runs[0].summary.state


def events(daemon: Daemon, run_id: str) -> list[dict[str, Any]]:
    out = daemon.orchctl("events", "--run", run_id, "--json", check=True).stdout
    return [json.loads(line) for line in out.splitlines()]


def plan_of(
    tmp_path: Path, name: str, tasks: list[dict[str, Any]], concurrency: int, **defaults: Any
) -> Path:
    return write_plan(
        tmp_path / f"{name}.json",
        {
            "name": name,
            "concurrency": concurrency,
            "workdir": str(tmp_path),
            "defaults": {"agent": "command", "max_retries": 0, **defaults},
            "tasks": tasks,
        },
    )


def live_processes(run_id: str) -> list[int]:
    """Processes of this machine (so of every node) that belong to the run and are not zombies."""
    marker = f"ORCH_RUN_ID={run_id}".encode()
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                if marker not in f.read().split(b"\0"):
                    continue
            with open(f"/proc/{name}/stat", "rb") as f:
                if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    continue
        except OSError:
            continue
        pids.append(int(name))
    return pids


def test_forty_tasks_spread_over_the_nodes_within_each_cap(
    ray_daemon, cluster: RayCluster, tmp_path: Path
) -> None:
    notes = tmp_path / "notes"
    # orch would run 10 at once: the nodes' caps (2 and 3) are what must hold
    plan = plan_of(
        tmp_path,
        "spread",
        [{"id": f"t{i}", "command": node_agent(notes, 0.4)} for i in range(40)],
        concurrency=10,
    )
    daemon = ray_daemon(max_sessions=10)
    view = submit(daemon, plan, wait=True)
    assert view["summary"]["counts"]["completed"] == 40, view["summary"]
    peaks = peaks_by_node(notes)
    assert set(peaks) == set(cluster.workers), (
        peaks
    )  # both workers ran sessions, the head (cap 0) none
    for node, cap in cluster.workers.items():
        assert 1 <= peaks[node] <= cap, (peaks, cluster.workers)
    # the output came back: each task's log holds what its agent printed, as on the local executor
    run_id = view["summary"]["run_id"]
    assert "t7 done after 0.4s" in daemon.orchctl("logs", run_id, "t7", check=True).stdout
    wait_until(
        lambda: not cluster.live_actors(f"orch-{run_id}-"),
        timeout=30,
        what="the actors to be killed",
    )


def test_cancel_leaves_no_process_on_any_node(
    ray_daemon, cluster: RayCluster, tmp_path: Path
) -> None:
    # 7 hanging tasks (they and their children ignore TERM) on 5 slots: 5 run, 2 wait for a node
    tasks = [
        {"id": f"h{i}", "command": agent("hang", str(tmp_path / f"pids{i}"))} for i in range(7)
    ]
    daemon = ray_daemon(max_sessions=7)
    run_id = submit(daemon, plan_of(tmp_path, "hang", tasks, concurrency=7))["run_id"]
    wait_until(
        lambda: sum((tmp_path / f"pids{i}").exists() for i in range(7)) == 5,
        timeout=60,
        what="5 agents to run",
    )
    assert len(live_processes(run_id)) >= 10  # each agent and its child
    daemon.orchctl("cancel", run_id, check=True)
    wait_until(
        lambda: run_state(daemon, run_id) == "cancelled", timeout=90, what="the run to be cancelled"
    )
    wait_until(
        lambda: not live_processes(run_id), timeout=30, what="every process of the run to end"
    )
    wait_until(
        lambda: not cluster.live_actors(f"orch-{run_id}-"), timeout=30, what="every actor to end"
    )
    finished = [e for e in events(daemon, run_id) if e["kind"] == "AttemptFinished"]
    assert {e["event"]["outcome"] for e in finished} == {"cancelled"}


def test_a_node_that_dies_mid_run_loses_no_task(
    ray_daemon, cluster: RayCluster, tmp_path: Path
) -> None:
    extra = cluster.cluster.add_node(**node_args(3))  # the one to remove: the module's nodes stay
    notes = tmp_path / "notes"
    # no retries: an attempt lost with its node must not spend one
    plan = plan_of(
        tmp_path,
        "doomed",
        [{"id": f"t{i}", "command": node_agent(notes, 1.5)} for i in range(24)],
        concurrency=8,
    )
    daemon = ray_daemon(max_sessions=8)
    run_id = submit(daemon, plan)["run_id"]

    def started_on_extra() -> int:
        return notes.exists() and sum(
            1 for row in read_notes(notes) if row[0] == "start" and row[3] == extra.node_id
        )

    wait_until(lambda: started_on_extra() >= 2, timeout=90, what="sessions on the node to remove")
    cluster.cluster.remove_node(extra, allow_graceful=False)
    wait_until(
        lambda: run_state(daemon, run_id) != "running", timeout=240, what="the run to finish"
    )
    view = json.loads(daemon.orchctl("status", run_id, "--json", check=True).stdout)["runs"][0]
    assert view["summary"]["state"] == "completed", view["summary"]
    log = events(daemon, run_id)
    lost = [e for e in log if e["kind"] == "AttemptFinished" and e["event"]["outcome"] == "lost"]
    assert lost, "no attempt was lost with the node"
    retried = [
        e
        for e in log
        if e["kind"] == "TaskRetrying" and e["task_id"] in {x["task_id"] for x in lost}
    ]
    assert retried and not any(e["event"]["spends_retry"] for e in retried)
    ends = [row for row in read_notes(notes) if row[0] == "end"]
    assert {row[1] for row in ends} == {f"t{i}" for i in range(24)}  # every task ended somewhere


def test_restarted_orchd_reattaches_to_living_actors(
    ray_daemon, cluster: RayCluster, tmp_path: Path
) -> None:
    notes = tmp_path / "notes"
    plan = plan_of(
        tmp_path,
        "reattach",
        [{"id": f"t{i}", "command": node_agent(notes, 3)} for i in range(4)],
        concurrency=4,
    )
    daemon = ray_daemon(max_sessions=4)
    run_id = submit(daemon, plan)["run_id"]
    wait_until(
        lambda: notes.exists() and len(read_notes(notes)) == 4, timeout=60, what="4 agents to start"
    )
    daemon.kill()
    daemon.start()
    wait_until(lambda: run_state(daemon, run_id) != "running", timeout=90, what="the run to finish")
    assert run_state(daemon, run_id) == "completed"
    log = events(daemon, run_id)
    assert len([e for e in log if e["kind"] == "AttemptAdopted"]) == 4
    assert not [
        e for e in log if e["kind"] == "AttemptFinished" and e["event"]["outcome"] != "success"
    ]
    assert len([r for r in read_notes(notes) if r[0] == "start"]) == 4  # none ran twice
    # the output after the restart was copied too, after what was copied before it
    assert daemon.orchctl("logs", run_id, "t2", check=True).stdout.strip().endswith("after 3.0s")


def kinds_by_task(log: list[dict[str, Any]]) -> dict[str | None, list[str]]:
    by_task: dict[str | None, list[str]] = collections.defaultdict(list)
    for e in log:
        by_task[e["task_id"]].append(e["kind"])
    return dict(by_task)


def test_same_plan_same_log_shape_as_local(
    make_daemon, cluster: RayCluster, tmp_path: Path
) -> None:
    notes, flaky = tmp_path / "notes", tmp_path / "flaky"
    plan = plan_of(
        tmp_path,
        "shape",
        [
            {"id": "ok", "command": node_agent(notes, 0)},
            {"id": "flaky", "command": agent("flaky", str(flaky), "1"), "max_retries": 1},
            {"id": "bad", "command": node_agent(notes, 0, 3)},
            {"id": "missing", "command": ["no-such-program-orch"]},
        ],
        concurrency=1,
        backoff={"initial": "0.05s", "jitter": "none"},
    )
    shapes, views = [], []
    for config in ({}, {"executor": "ray", "ray": {"address": cluster.address}}):
        daemon = make_daemon(**config)
        view = submit(daemon, plan, wait=True)
        shapes.append(kinds_by_task(events(daemon, view["summary"]["run_id"])))
        views.append({t["id"]: (t["state"], t["attempts"]) for t in view["tasks"]})
        daemon.stop()
    assert shapes[0] == shapes[1]
    assert (
        views[0]
        == views[1]
        == {
            "ok": ("completed", 1),
            "flaky": ("completed", 2),
            "bad": ("failed", 1),
            "missing": ("failed", 1),
        }
    )


def test_worktrees_on_nodes_that_share_the_repository_path(ray_daemon, tmp_path: Path) -> None:
    # the nodes see the repository and ORCH_HOME at the same paths (one machine here; NFS or alike across machines)
    repo = make_repo(tmp_path / "repo")
    daemon = ray_daemon()
    view = run_plan(
        daemon,
        tmp_path,
        repo,
        [
            {"id": "docs", "command": agent("edit", "README.md=# app, on ray")},
            {
                "id": "feature",
                "command": agent("edit", "feature.py=print(1)"),
                "verify": [["python3", "feature.py"]],  # checked on the node, read back here
            },
        ],
    )
    assert view["summary"]["state"] == "completed", view
    run_id = view["summary"]["run_id"]
    assert {t["id"]: t["files"] for t in view["tasks"]} == {
        "docs": ["README.md"],
        "feature": ["feature.py"],
    }
    assert [t["verify"] and t["verify"]["result"] for t in view["tasks"]] == [None, "passed"]
    assert "+# app, on ray" in daemon.orchctl("diff", run_id, "docs", check=True).stdout
    daemon.orchctl("merge", run_id, check=True)
    assert (repo / "README.md").read_text() == "# app, on ray\n" and (repo / "feature.py").exists()


def test_an_unreachable_cluster_is_a_clear_error(make_daemon) -> None:
    with pytest.raises(
        AssertionError, match=r"cannot reach the Ray cluster at 127\.0\.0\.1:9: .*refused"
    ):
        make_daemon(executor="ray", ray={"address": "127.0.0.1:9"})
