"""Notifications from a real orchd: a command with the event on stdin, a webhook through apprise,
a notifier that hangs (logged once, the run unharmed), and a restart that sends nothing twice."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from orchd import schemas
from tests.conftest import Daemon, wait_until, write_plan

# a notifier: appends what it reads on stdin, one line per notification
RECORD = "import sys; open(sys.argv[1], 'a').write(sys.stdin.read() + '\\n')"
# a notifier that hangs: notes that it started, then never ends
HANG = "import sys, time; open(sys.argv[1], 'a').write('started\\n'); time.sleep(3600)"


def notes(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def plan(tmp_path: Path, name: str, failing: int = 1) -> Path:
    return write_plan(
        tmp_path / f"{name}.json",
        {
            "name": name,
            "workdir": str(tmp_path),
            "defaults": {"agent": "command", "max_retries": 0},
            "tasks": [{"id": "fine", "command": ["true"]}]
            + [{"id": f"broken{i}", "command": ["false"]} for i in range(failing)],
        },
    )


def run(orchd: Daemon, plan_file: Path) -> str:
    done = orchd.orchctl("submit", str(plan_file), "--wait", "--json")
    assert done.returncode in (0, 1), done.stderr  # ends, whatever the notifier does
    return json.loads(done.stdout)["summary"]["run_id"]


def test_a_command_gets_each_event_once_across_a_restart(make_daemon, tmp_path: Path) -> None:
    out = tmp_path / "notes.jsonl"
    orchd = make_daemon(notify={"command": [sys.executable, "-c", RECORD, str(out)]})
    first = run(orchd, plan(tmp_path, "first"))
    got = wait_until(lambda: len(notes(out)) == 2 and notes(out), what="two notifications")
    assert [(n["kind"], n["task_id"]) for n in got] == [
        ("TaskFailed", "broken0"),
        ("RunFinished", None),
    ]
    assert (
        got[0]["title"] == f"orch: task broken0 of {first} failed" and got[0]["status"] == "failure"
    )
    assert got[1]["title"] == f"orch: run {first} failed"
    assert got[1]["body"] == "2 tasks: 1 completed, 1 failed"
    assert got[1]["event"] == {"kind": "RunFinished", "run_id": first, "state": "failed"}
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(
        json.loads((schemas.SCHEMA_DIR / "notification.schema.json").read_text())
    )
    for note in got:
        validator.validate(note)

    orchd.stop()
    orchd = make_daemon(notify={"command": [sys.executable, "-c", RECORD, str(out)]})
    second = run(orchd, plan(tmp_path, "second", failing=0))
    # in the order of the log: anything sent again would come before the second run's end
    wait_until(lambda: len(notes(out)) >= 3, what="the second run's notification")
    assert [(n["kind"], n["run_id"]) for n in notes(out)] == [
        ("TaskFailed", first),
        ("RunFinished", first),
        ("RunFinished", second),
    ]
    assert notes(out)[2]["status"] == "success"


def test_a_hanging_notifier_is_logged_once_and_blocks_nothing(make_daemon, tmp_path: Path) -> None:
    started = tmp_path / "started"
    orchd = make_daemon(
        notify={"command": [sys.executable, "-c", HANG, str(started)], "timeout": 0.5}
    )
    run(orchd, plan(tmp_path, "hung", failing=2))  # ends while its notifier hangs
    # three notifications (two tasks failed, the run finished), each killed after its timeout
    wait_until(
        lambda: started.exists() and started.read_text().count("started") == 3,
        what="three tries",
    )
    again = run(orchd, plan(tmp_path, "again", failing=0))  # still runs, still ends
    assert again
    log = wait_until(
        lambda: "took longer than 0.5s" in orchd.log() and orchd.log(), what="the complaint"
    )
    assert log.count("notify: command") == 1  # once: the next failures only count


def test_an_unknown_kind_is_refused_at_start(tmp_path: Path, orch_home: Path) -> None:
    from orchd.daemon import load_config
    from orchd.errors import OrchError
    from orchd.paths import resolve

    paths = resolve()
    paths.config_dir.mkdir(parents=True)
    paths.config_file.write_text('[notify]\non = ["RunFinished", "RunFinnished"]\n')
    with pytest.raises(OrchError, match=r"notify.on: unknown event kind 'RunFinnished'"):
        load_config(paths)


class Hook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.skipif(
    not os.environ.get("CI") and importlib.util.find_spec("apprise") is None,
    reason="needs apprise (pip install -e '.[test]')",
)
def test_a_webhook_on_loopback_through_apprise(make_daemon, tmp_path: Path) -> None:
    received: list[dict[str, Any]] = []
    server = HTTPServer(("127.0.0.1", 0), type("Handler", (Hook,), {"received": received}))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        orchd = make_daemon(notify={"urls": [f"json://127.0.0.1:{port}/orch-hook"]})
        run_id = run(orchd, plan(tmp_path, "hooked"))
        wait_until(lambda: len(received) == 2, what="two posts")
    finally:
        server.shutdown()
        server.server_close()
    assert [r["title"] for r in received] == [
        f"orch: task broken0 of {run_id} failed",
        f"orch: run {run_id} failed",
    ]
    assert received[1]["message"] == "2 tasks: 1 completed, 1 failed"
    assert [r["type"] for r in received] == ["failure", "failure"]
