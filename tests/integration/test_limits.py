"""Limits, each with a clear error: tasks per run, prompt size, message size, runs kept, and durations
and retry counts large enough to overflow what the daemon computes with."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from orchd import protocol as p
from orchd.backoff import delay
from orchd.errors import ErrorCode, OrchError, PlanError
from orchd.plan import MAX_PROMPT_BYTES, MAX_TASKS, BackoffSpec, load_plan
from tests.conftest import Daemon, wait_until, write_plan


def _plan(tasks: int = 1, **extra: object) -> dict:
    return {
        "defaults": {"agent": "command", "max_retries": 0},
        "tasks": [{"id": f"t{i}", "command": ["true"]} for i in range(tasks)],
        **extra,
    }


def _submit(orchd: Daemon, plan: dict, timeout: float = 30) -> p.Response:
    with orchd.client(timeout=timeout) as client:
        return client.call(p.Submit(plan=json.dumps(plan), fmt="json", base_dir="/"))


def _refusal(orchd: Daemon, plan: dict, timeout: float = 30) -> OrchError:
    with pytest.raises(OrchError) as info:
        _submit(orchd, plan, timeout)
    return info.value


def test_tasks_per_run(orchd: Daemon) -> None:
    error = _refusal(orchd, _plan(MAX_TASKS + 1))
    assert error.code is ErrorCode.BAD_PLAN and f"more than {MAX_TASKS} tasks" in error.message


def test_for_each_past_the_task_limit_stops_early(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("orchd.plan.MAX_TASKS", 5)
    for i in range(8):
        (tmp_path / f"f{i}.txt").write_text("x")
    with pytest.raises(PlanError, match=r"tasks\[0\].for_each: '\*.txt' matches more than 5 files"):
        load_plan(
            json.dumps(
                {
                    "tasks": [
                        {
                            "id": "t-{stem}",
                            "for_each": "*.txt",
                            "agent": "command",
                            "command": ["true"],
                        }
                    ]
                }
            ),
            base_dir=tmp_path,
        )


def test_prompt_size(orchd: Daemon, tmp_path: Path) -> None:
    task = {"id": "a", "agent": "claude", "prompt": "x" * MAX_PROMPT_BYTES}
    assert (
        load_plan(json.dumps({"tasks": [task]}), base_dir=tmp_path).tasks[0].prompt
        == task["prompt"]
    )
    error = _refusal(
        orchd, {"tasks": [{**task, "prompt": "é" * (MAX_PROMPT_BYTES // 2 + 1)}]}
    )  # bytes, not chars
    assert error.code is ErrorCode.BAD_PLAN
    assert f"tasks[0].prompt: is larger than {MAX_PROMPT_BYTES >> 10} KiB" in error.message


def test_message_size(make_daemon: Callable[..., Daemon], tmp_path: Path) -> None:
    limit = 64 << 10
    orchd = make_daemon(max_message_bytes=limit)
    plan = write_plan(
        tmp_path / "big.json", _plan(1, name="x" * (limit + 100))
    )  # over the limit, under twice it
    result = orchd.orchctl("submit", str(plan))
    assert result.returncode == 2, result
    assert (
        f"over orchd's limit of {limit} bytes (max_message_bytes in config.toml)" in result.stderr
    )
    # far over: nng drops it unread, and the client says why it got no answer
    error = _refusal(orchd, _plan(1, name="x" * (3 << 20)), timeout=2)
    assert error.code is ErrorCode.UNAVAILABLE and "twice its max_message_bytes" in error.message
    assert isinstance(_submit(orchd, _plan(1)), p.Submitted)  # and it keeps serving


def test_runs_kept(make_daemon: Callable[..., Daemon]) -> None:
    orchd = make_daemon(max_runs=3)
    outcomes: list[object] = []

    def submit() -> None:
        try:
            outcomes.append(_submit(orchd, _plan(1)))
        except OrchError as exc:
            outcomes.append(exc)

    threads = [
        threading.Thread(target=submit) for _ in range(6)
    ]  # at once: none may slip past the count
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    accepted = [o for o in outcomes if isinstance(o, p.Submitted)]
    refused = [o for o in outcomes if isinstance(o, OrchError)]
    assert (len(accepted), len(refused)) == (3, 3), outcomes
    assert all(e.code is ErrorCode.LIMIT for e in refused)
    assert "keeps at most 3 runs and has 3: raise max_runs in" in refused[0].message
    result = orchd.orchctl("submit", str(write_plan(orchd.home / "p.json", _plan(1, workdir="/"))))
    assert result.returncode == 2 and "max_runs" in result.stderr, result
    assert orchd.orchctl("status", check=True)  # reading is never refused
    orchd.stop()
    orchd.config["max_runs"] = 4
    orchd.start()  # the count comes from the log
    assert isinstance(_submit(orchd, _plan(1)), p.Submitted)
    assert _refusal(orchd, _plan(1)).code is ErrorCode.LIMIT


def test_durations_past_what_epoll_can_wait(orchd: Daemon, tmp_path: Path) -> None:
    """A 30-day timeout once overflowed epoll.poll in the reactor thread and stalled every run."""
    plan = write_plan(
        tmp_path / "p.json",
        {
            "workdir": str(tmp_path),
            "defaults": {
                "agent": "command",
                "timeout": "30d",
                "max_retries": 1,
                "backoff": {"initial": "40d", "max": "400d"},
            },
            "tasks": [{"id": "a", "command": [sys.executable, "-c", "print('ok')"]}],
        },
    )
    result = orchd.orchctl("submit", str(plan), "--wait", "--json", timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    with orchd.client() as client:
        assert isinstance(client.call(p.Ping()), p.Pong)


def test_backoff_past_the_float_range_is_the_ceiling() -> None:
    """factor ** retries overflowed a float after ~1,100 retries and crashed the run actor."""
    assert delay(BackoffSpec(initial=2.0, factor=2.0, max=300.0, jitter="none"), 1100) == 300.0
    assert delay(BackoffSpec(initial=0.0, factor=2.0, max=300.0, jitter="none"), 1100) == 0.0
    assert 0.0 <= delay(BackoffSpec(factor=10.0, max=60.0), 5000) <= 60.0


def test_long_polls_never_take_the_last_workers(make_daemon: Callable[..., Daemon]) -> None:
    """Watchers hold long-polls; past the slots for them they are told `busy`, and status still answers."""
    orchd = make_daemon(server_workers=6)  # 2 long-poll slots, 4 workers kept free
    held: list[p.EventsReply] = []
    started = threading.Barrier(3)

    def poll() -> None:
        with orchd.client(timeout=30) as client:
            started.wait()
            while (
                reply := client.call(p.Events(after=10**9, wait=6.0))
            ).busy:  # the main thread had the slot
                pass
            held.append(reply)

    pollers = [threading.Thread(target=poll) for _ in range(2)]
    for t in pollers:
        t.start()
    started.wait()
    with orchd.client(timeout=5) as client:
        # a third long-poll is answered at once and told to come back; status is never queued behind them
        busy = wait_until(
            lambda: (r := client.call(p.Events(after=10**9, wait=0.05))).busy and r,
            timeout=5,
            what="the long-poll slots to fill",
        )
        assert busy.events == []
        assert client.call(p.Status()).runs == []
    for t in pollers:
        t.join(timeout=20)
    assert len(held) == 2 and not any(r.busy for r in held)
