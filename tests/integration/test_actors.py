"""The actors in-process (real journal, reactor, SQLite and processes): failures are supervised."""

from __future__ import annotations

import json
import sys
import threading

import pykka

from orchd import paths as orch_paths
from orchd.actors.messages import CancelTasks
from orchd.actors.session import SessionActor
from orchd.daemon import Config, Daemon
from orchd.protocol import Submit, encode
from tests.conftest import AGENTS, wait_until


def test_a_failed_run_actor_is_restarted_from_the_log(orch_home, tmp_path) -> None:
    daemon = Daemon(orch_paths.resolve(), Config(max_sessions=4)).start()
    try:
        plan = (
            '{"name": "sup", "workdir": "%s", "defaults": {"agent": "command", "max_retries": 0},'
            ' "tasks": [{"id": "a", "command": ["sleep", "0.2"]}, {"id": "b", "command": ["true"]}]}'
            % tmp_path
        )
        conn = daemon.ctx.reader()
        reply = daemon.server.dispatcher._submit(
            Submit(plan=plan, source="p.json", base_dir=str(tmp_path))
        )
        runs = daemon.ctx.runs
        first = runs[reply.run_id]
        first.tell(
            CancelTasks(reply.run_id, ["no-such-task"], pykka.ThreadingFuture())
        )  # bug-shaped: it fails
        wait_until(lambda: not first.is_alive(), what="the run actor to fail")

        def completed():
            view = daemon.server.handle(b'{"op":"Status","run":"%s"}' % reply.run_id.encode(), conn)
            return (
                json.loads(encode(view))["runs"][0]["summary"]["state"] == "completed"
            )  # views go out encoded

        wait_until(completed, timeout=30, what="the restarted run to complete")
        again = daemon.ctx.runs
        assert reply.run_id not in again  # finished runs let their actor go
        conn.close()
    finally:
        daemon.stop()
    assert not pykka.ActorRegistry.get_all()


def _gated_plan(tmp_path, gate, n: int) -> str:
    tasks = [
        {"id": f"t{i}", "command": [sys.executable, str(AGENTS / "gate.py"), str(gate)]}
        for i in range(n)
    ]
    return json.dumps(
        {
            "name": "gated",
            "workdir": str(tmp_path),
            "concurrency": n,
            "defaults": {"agent": "command", "max_retries": 0},
            "tasks": tasks,
        }
    )


def _sessions(run_id: str) -> list:
    return [
        ref
        for ref in pykka.ActorRegistry.get_by_class(SessionActor)
        if ref.proxy().run_id.get() == run_id
    ]


def _state(daemon, conn, run_id: str) -> dict:
    view = daemon.server.handle(b'{"op":"Status","run":"%s"}' % run_id.encode(), conn)
    return json.loads(encode(view))["runs"][0]


def test_each_running_attempt_is_a_session_actor_and_none_outlives_the_run(
    orch_home, tmp_path
) -> None:
    daemon = Daemon(orch_paths.resolve(), Config(max_sessions=8)).start()
    gate = tmp_path / "gate"
    try:
        conn = daemon.ctx.reader()
        plan = _gated_plan(tmp_path, gate, 5)
        reply = daemon.server.dispatcher._submit(Submit(plan=plan, source="p.json", base_dir="."))
        wait_until(
            lambda: _state(daemon, conn, reply.run_id)["summary"]["counts"].get("running") == 5,
            what="five running attempts",
        )
        sessions = _sessions(reply.run_id)
        assert len(sessions) == 5 and all(ref.is_alive() for ref in sessions)
        assert {ref.proxy().task.get().id for ref in sessions} == {f"t{i}" for i in range(5)}
        threads = threading.active_count()
        assert threads < 40, f"{threads} threads for 5 sessions: sessions must share a pool"
        gate.touch()
        wait_until(
            lambda: _state(daemon, conn, reply.run_id)["summary"]["state"] == "completed",
            what="the run to complete",
        )
        wait_until(lambda: not _sessions(reply.run_id), what="the sessions to stop")
        conn.close()
    finally:
        daemon.stop()
    assert not pykka.ActorRegistry.get_all()


def test_a_restarted_run_actor_takes_over_the_running_sessions(orch_home, tmp_path) -> None:
    daemon = Daemon(orch_paths.resolve(), Config(max_sessions=8)).start()
    gate = tmp_path / "gate"
    try:
        conn = daemon.ctx.reader()
        plan = _gated_plan(tmp_path, gate, 4)
        reply = daemon.server.dispatcher._submit(Submit(plan=plan, source="p.json", base_dir="."))
        run_id = reply.run_id
        wait_until(lambda: len(_sessions(run_id)) == 4, what="four sessions")
        first = daemon.ctx.runs[run_id]
        first.tell(CancelTasks(run_id, ["no-such-task"], pykka.ThreadingFuture()))  # it fails
        wait_until(lambda: not first.is_alive(), what="the run actor to fail")
        wait_until(
            lambda: (ref := daemon.ctx.runs.get(run_id)) is not None and ref is not first,
            what="a new run actor",
        )
        sessions = _sessions(run_id)
        assert len(sessions) == 4  # the sessions outlived their run actor
        gate.touch()
        wait_until(
            lambda: _state(daemon, conn, run_id)["summary"]["state"] == "completed",
            what="the run to complete",
        )
        tasks = _state(daemon, conn, run_id)["tasks"]
        assert [t["attempts"] for t in tasks] == [1, 1, 1, 1]  # taken over, not run again
        conn.close()
    finally:
        daemon.stop()
    assert not pykka.ActorRegistry.get_all()
