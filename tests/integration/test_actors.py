"""The actors in-process (real journal, reactor, SQLite and processes): failures are supervised."""

from __future__ import annotations

import json

import pykka

from orchd import paths as orch_paths
from orchd.actors.messages import CancelTasks
from orchd.daemon import Config, Daemon
from orchd.protocol import Submit, encode
from tests.conftest import wait_until


def test_a_failed_run_actor_is_restarted_from_the_log(orch_home, tmp_path) -> None:
    daemon = Daemon(orch_paths.resolve(), Config(max_sessions=4)).start()
    try:
        plan = (
            '{"name": "sup", "workdir": "%s", "defaults": {"agent": "command", "max_retries": 0},'
            ' "tasks": [{"id": "a", "command": ["sleep", "0.2"]}, {"id": "b", "command": ["true"]}]}'
            % tmp_path
        )
        conn = daemon.ctx.reader()
        reply = daemon.server.dispatcher._submit(Submit(plan=plan, source="p.json", base_dir=str(tmp_path)))
        runs = daemon.supervisor.proxy().runs.get()
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
        again = daemon.supervisor.proxy().runs.get()
        assert reply.run_id not in again  # finished runs let their actor go
        conn.close()
    finally:
        daemon.stop()
    assert not pykka.ActorRegistry.get_all()
