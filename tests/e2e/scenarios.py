"""Scenarios every coding-agent CLI goes through end to end; the test_AGENT.py files run them."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Daemon, write_plan
from tests.e2e.conftest import AgentRig
from tests.e2e.stubs.base import Reply, WriteFile


def mixed_plan(rig: AgentRig) -> dict[str, dict[str, Any]]:
    """A plan of four tasks: an answer, a 429 then success, a 401, a file edit. Returns the tasks by id."""
    stub = rig.stub
    stub.script("[answer]", Reply("The answer is 42.", tokens_in=1200, tokens_out=80))
    stub.script("[flaky]", stub.final_rate_limit, Reply("Recovered after a rate limit."))
    stub.script("[denied]", stub.unauthorized)
    stub.script(
        "[edit]", WriteFile("notes.txt", "written by the agent\n"), Reply("I wrote notes.txt.")
    )
    view = rig.run(
        [
            {"id": "answer", "prompt": "[answer] What is six times seven?"},
            {"id": "flaky", "prompt": "[flaky] Say something."},
            # another account: a rejected credential holds its provider, not the others'
            {"id": "denied", "prompt": "[denied] Say something.", "provider": "other-account"},
            {"id": "edit", "prompt": "[edit] Write notes.txt."},
        ]
    )
    tasks = view["by_id"]
    run_id = view["summary"]["run_id"]
    answer, flaky, denied, edit = (tasks[t] for t in ("answer", "flaky", "denied", "edit"))

    assert answer["state"] == "completed", rig.log(run_id, "answer")
    assert answer["result"] == "The answer is 42." and answer["attempts"] == 1
    assert (answer["tokens_in"], answer["tokens_out"]) == (1200, 80)

    assert flaky["state"] == "completed" and flaky["attempts"] == 2, rig.log(run_id, "flaky")
    assert flaky["result"] == "Recovered after a rate limit."

    assert denied["state"] == "failed" and denied["attempts"] == 1, denied
    assert len(stub.model_requests("[denied]")) == 1  # no retry reached the provider

    assert edit["state"] == "completed" and edit["result"] == "I wrote notes.txt.", rig.log(
        run_id, "edit"
    )
    assert (
        edit["files"] == ["notes.txt"] and not (rig.workdir / "notes.txt").exists()
    )  # in its own worktree
    diff = rig.daemon.orchctl("diff", run_id, "edit", check=True).stdout
    assert "+written by the agent" in diff, diff
    assert view["summary"]["state"] == "failed"
    return tasks


def concurrency(rig: AgentRig, tasks: int = 12, limit: int = 3) -> None:
    """`tasks` tasks at concurrency `limit`: the stub saw more than one session at once, and never more than `limit`."""
    view = rig.run(
        [{"id": f"t{i:02d}", "prompt": f"[t{i:02d}] Say hello."} for i in range(tasks)],
        concurrency=limit,
    )
    assert [t["state"] for t in view["tasks"]] == ["completed"] * tasks
    assert len({r.session for r in rig.stub.model_requests()}) == tasks
    assert 1 < rig.stub.peak_sessions <= limit, rig.stub.peak_sessions


def not_installed(
    agent: str, tmp_path: Path, make_daemon: Callable[..., Daemon], monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """With the CLI nowhere on orchd's PATH, the task fails at once, after one attempt."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    daemon = make_daemon()
    plan = write_plan(
        tmp_path / "plan.json",
        {
            "name": "missing",
            "workdir": str(tmp_path),
            "isolation": "none",
            "defaults": {"agent": agent, "max_retries": 3},
            "tasks": [{"id": "t", "prompt": "hello"}],
        },
    )
    done = daemon.orchctl("submit", str(plan), "--wait", "--json", timeout=60)
    assert done.returncode == 1, done.stderr
    task = json.loads(done.stdout)["tasks"][0]
    assert task["state"] == "failed" and task["attempts"] == 1, task
    assert f"{agent!r}" in task["reason"] and "not found" in task["reason"], task["reason"]
    return task


def resumed(rig: AgentRig) -> None:
    """`resume = true`: a retry continues the agent's own session, with the work of the first attempt in it."""
    stub = rig.stub
    stub.script(
        "[resume]",
        WriteFile("half.txt", "first half\n"),
        stub.final_rate_limit,
        Reply("Finished the rest."),
    )
    view = rig.run(
        [{"id": "long", "prompt": "[resume] Write half.txt, then finish.", "resume": True}]
    )
    task = view["by_id"]["long"]
    assert task["state"] == "completed" and task["attempts"] == 2, rig.log(
        view["summary"]["run_id"], "long"
    )
    first, _, retry = stub.model_requests("[resume]")
    assert retry.session == first.session  # the same conversation, continued
    assert "half.txt" in json.dumps(retry.body) and "Continue where it left off" in json.dumps(
        retry.body
    )
    assert task["files"] == ["half.txt"]  # the resumed attempt kept the first one's worktree
    assert (
        "+first half"
        in rig.daemon.orchctl("diff", view["summary"]["run_id"], "long", check=True).stdout
    )


def long_prompt(rig: AgentRig) -> None:
    """A prompt over Linux's 128 KiB limit on one argument still reaches the model whole (the adapter uses stdin)."""
    rig.stub.script("[huge]", Reply("Read it all."))
    prompt = "[huge] Summarise this: " + "lorem ipsum " * 20_000  # 240 KB
    task = rig.run([{"id": "huge", "prompt": prompt}])["by_id"]["huge"]
    assert task["state"] == "completed" and task["result"] == "Read it all.", task
    assert "lorem ipsum " * 100 in json.dumps(rig.stub.model_requests("[huge]")[0].body)
