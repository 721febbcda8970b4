"""orchctl: thin click commands that build a request, call orchd, render the reply.

Exit codes: 0 ok, 1 run failed or request failed, 2 bad input, 3 orchd unreachable.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import click
import msgspec

from orchctl.completion import complete_run, complete_task, completion
from orchd import events as ev
from orchd import protocol as p
from orchd.errors import ErrorCode, OrchError

_json = msgspec.json.Encoder()


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(msgspec.to_builtins(obj), indent=2, sort_keys=True) + "\n")


def _debug() -> bool:
    """Whether tracebacks were asked for (`--debug`, or ORCH_DEBUG=1)."""
    return os.environ.get("ORCH_DEBUG", "").lower() in ("1", "true", "yes", "on")


def handle_errors(fn: Callable) -> Callable:
    """Map OrchError to its message and exit code: the one place the CLI does so."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except OrchError as exc:
            click.echo(f"orchctl: {exc.message}", err=True)
            sys.exit(exc.code.exit_code)
        except KeyboardInterrupt:
            sys.exit(130)
        except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as on SIGPIPE
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(141)
        except Exception as exc:  # a bug: one line for the user, the traceback on request
            if _debug():
                raise
            click.echo(f"orchctl: internal error: {type(exc).__name__}: {exc} (--debug shows the traceback)",
                       err=True)
            sys.exit(1)

    return wrapper


def _client(ctx: click.Context, timeout: float = 30.0) -> p.Client:
    from orchctl.connect import autostart_allowed, connect

    return connect(autostart=autostart_allowed(ctx.obj["no_start"]), timeout=timeout)


def _follow(client: p.Client, *, after: int = 0, run: str | None = None, task: str | None = None,
            wait: float = 1.0) -> Iterator[list]:
    """Batches of events after `after`, long-polled: no event is ever skipped."""
    while True:
        reply = client.call(p.Events(after=after, run=run, task=task, wait=wait, limit=5000))
        assert isinstance(reply, p.EventsReply)
        after = reply.events[-1].seq if reply.events else max(after, reply.seq)
        yield reply.events
        if reply.busy and not reply.events:  # every long-poll slot of orchd is taken: poll gently instead
            time.sleep(0.25)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--no-start", is_flag=True, help="Do not start orchd when none answers (also ORCH_NO_AUTOSTART=1).")
@click.option("--debug", is_flag=True, help="Show the traceback of an unexpected error (also ORCH_DEBUG=1).")
@click.version_option(package_name="orch", prog_name="orchctl")
@click.pass_context
def cli(ctx: click.Context, no_start: bool, debug: bool) -> None:
    """Run many AI coding-agent sessions in parallel from one plan.

    \b
    Example:
      orchctl submit examples/quickstart.toml --watch
    """
    ctx.ensure_object(dict)
    ctx.obj["no_start"] = no_start
    if debug:
        os.environ["ORCH_DEBUG"] = "1"


cli.add_command(completion)


@cli.command()
@click.argument("plan", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--wait", "wait_", is_flag=True, help="Wait for the run to end; print progress lines.")
@click.option("--watch", is_flag=True, help="Show the live view until the run ends.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the run's status when waiting).")
@click.pass_context
@handle_errors
def submit(ctx: click.Context, plan: Path, wait_: bool, watch: bool, as_json: bool) -> None:
    """Submit PLAN (TOML or JSON) as a new run.

    \b
    Example:
      orchctl submit plan.toml --watch
    """
    try:
        text = plan.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise OrchError(f"cannot read plan {plan}: {exc}", ErrorCode.BAD_PLAN) from None
    fmt = {".toml": "toml", ".json": "json"}.get(plan.suffix.lower())
    client = _client(ctx)
    reply = client.call(p.Submit(plan=text, source=str(plan), base_dir=str(plan.absolute().parent), fmt=fmt))
    assert isinstance(reply, p.Submitted)
    for warning in reply.warnings:
        click.echo(f"orchctl: warning: {warning}", err=True)
    if not (wait_ or watch):
        if as_json:
            _print_json(p.SubmittedRun(run_id=reply.run_id, tasks=reply.tasks, warnings=reply.warnings))
        else:
            click.echo(f"submitted {reply.run_id} ({reply.tasks} tasks); follow it with: orchctl watch {reply.run_id}")
        return
    if not as_json:
        click.echo(f"submitted {reply.run_id} ({reply.tasks} tasks)", err=True)
    _wait_for_run(client, reply.run_id, live=watch and not as_json, quiet=as_json)
    _finish(client, reply.run_id, as_json)


def _wait_for_run(client: p.Client, run_id: str, *, live: bool, quiet: bool) -> None:
    from orchctl import live as lv
    from orchctl import render

    tracker = lv.RunTracker(run_id)
    if live and render.is_tty():
        try:
            ended = lv.watch(client.address, tracker, render.console)
        except KeyboardInterrupt:
            ended = False
        if not ended:
            click.echo(f"orchctl: stopped watching; {run_id} goes on (orchctl watch {run_id})", err=True)
            sys.exit(130)
        return
    last_line = ""
    for rows in _follow(client, run=run_id, wait=5.0):
        for _row, event in tracker.steps(rows):  # each line from the state as of its event
            if quiet or render.is_tty() or event is None or tracker.run is None:
                continue
            line = render.event_line(tracker.run, event)
            if line:
                click.echo(line)
        if not quiet and render.is_tty() and tracker.run is not None:
            line = render.progress_line(tracker.run)
            if line != last_line:
                click.echo("\r\x1b[K" + line, nl=False)  # one line, rewritten in place
                last_line = line
        if tracker.finished:
            if last_line:
                click.echo()
            return


def _finish(client: p.Client, run_id: str, as_json: bool) -> None:
    from orchctl import render

    reply = client.call(p.Status(run=run_id))
    assert isinstance(reply, p.StatusReply)
    view = reply.runs[0]
    if as_json:
        _print_json(view)
    else:
        render.console.print(render.final_report(view))
    sys.exit(0 if view.summary.state == "completed" else 1)


def _event_line(row: Any, event: Any) -> str:
    from orchctl.render import when

    detail = ""
    if event is not None:
        fields = msgspec.to_builtins(event)
        for key in ("kind", "run_id", "task_id", "spec"):
            fields.pop(key, None)
        detail = " ".join(f"{k}={v}" for k, v in fields.items() if v not in ("", None, [], {}))
    task = row.task_id or "-"
    return f"{row.seq:>7} {when(row.ts)} {row.run_id} {task} {row.kind} {detail}".rstrip()


@cli.command()
@click.argument("run", required=False, shell_complete=complete_run)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (schemas/status.schema.json).")
@click.pass_context
@handle_errors
def status(ctx: click.Context, run: str | None, as_json: bool) -> None:
    """Show every run, or one RUN with its tasks.

    \b
    Example:
      orchctl status quickstart-1a2b3c --json
    """
    from orchctl import render

    reply = _client(ctx).call(p.Status(run=run))
    assert isinstance(reply, p.StatusReply)
    if as_json:
        _print_json(reply)
    elif run is None:
        render.console.print(render.runs_table(v.summary for v in reply.runs))
    else:
        render.console.print(render.run_status(reply.runs[0]))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@handle_errors
def runs(ctx: click.Context, as_json: bool) -> None:
    """List the runs, oldest first.

    \b
    Example:
      orchctl runs
    """
    from orchctl import render

    reply = _client(ctx).call(p.Runs())
    assert isinstance(reply, p.RunsReply)
    if as_json:
        _print_json(reply)
    else:
        render.console.print(render.runs_table(reply.runs))


@cli.command()
@click.argument("run", default="last", shell_complete=complete_run)
@click.pass_context
@handle_errors
def watch(ctx: click.Context, run: str) -> None:
    """Watch RUN (default: the newest) live until it ends; f filters by state, q or Ctrl-C leaves it running.

    \b
    Example:
      orchctl watch last
    """
    client = _client(ctx)
    reply = client.call(p.Status(run=run))
    assert isinstance(reply, p.StatusReply)
    run_id = reply.runs[0].summary.run_id
    _wait_for_run(client, run_id, live=True, quiet=False)
    _finish(client, run_id, False)


@cli.command()
@click.argument("run", shell_complete=complete_run)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one run of schemas/status.schema.json).")
@click.option("--markdown", is_flag=True, help="Print a Markdown table to paste into a pull request.")
@click.pass_context
@handle_errors
def results(ctx: click.Context, run: str, as_json: bool, markdown: bool) -> None:
    """Show what each task of RUN produced: state, attempts, duration, cost, files, result.

    \b
    Example:
      orchctl results last --markdown >> pr-comment.md
    """
    from orchctl import render

    reply = _client(ctx).call(p.Status(run=run))
    assert isinstance(reply, p.StatusReply)
    view = reply.runs[0]
    if as_json:
        _print_json(view)
    elif markdown:
        click.echo(render.results_markdown(view), nl=False)
    else:
        render.console.print(render.results_table(view))
        render.console.print(render.summary_line(view.summary))


@cli.command()
@click.argument("run", shell_complete=complete_run)
@click.argument("task", shell_complete=complete_task)
@click.option("-f", "--follow", is_flag=True, help="Keep printing output as the attempt writes it.")
@click.option("--attempt", type=int, help="Which attempt (1-based; default: the latest).")
@click.option("--raw", is_flag=True, help="The output as the agent wrote it (no rendering of stream-json).")
@click.pass_context
@handle_errors
def logs(ctx: click.Context, run: str, task: str, follow: bool, attempt: int | None, raw: bool) -> None:
    """Print the output of TASK of RUN: an agent's conversation, or the raw lines with --raw.

    \b
    Example:
      orchctl logs last hints-core -f
      orchctl logs last hints-core --attempt 1 --raw | jq .
    """
    from orchctl.activity import Conversation

    client = _client(ctx)
    info = client.call(p.TaskInfo(run=run, task=task))
    assert isinstance(info, p.TaskReply)
    if not info.attempts:
        raise OrchError(f"task {task} has not started yet", ErrorCode.NOT_FOUND)
    n = attempt or info.attempts[-1].n
    chosen = next((a for a in info.attempts if a.n == n), None)
    if chosen is None:
        raise OrchError(f"task {task} has no attempt {n} (it has {len(info.attempts)})", ErrorCode.NOT_FOUND)
    out = sys.stdout.buffer
    offset = 0
    conversation = None if raw else Conversation()

    def drain(last: bool = False) -> None:
        nonlocal offset
        try:
            with open(chosen.log_path, "rb") as f:
                f.seek(offset)
                while chunk := f.read(1 << 16):
                    out.write(chunk if conversation is None else conversation.feed(chunk))
                    offset += len(chunk)
        except FileNotFoundError:
            pass
        if last and conversation is not None:
            out.write(conversation.flush())
        out.flush()

    if not follow or chosen.outcome is not None:
        drain(last=True)
        return
    drain()
    for _ in _follow(client, after=0, run=info.run_id, task=task, wait=0.2):
        drain()
        latest = client.call(p.TaskInfo(run=info.run_id, task=task))
        assert isinstance(latest, p.TaskReply)
        if next((a for a in latest.attempts if a.n == n), chosen).outcome is not None:
            drain(last=True)
            return


@cli.command()
@click.argument("run", shell_complete=complete_run)
@click.argument("task", shell_complete=complete_task)
@click.option("--json", "as_json", is_flag=True, help="Print the task and its attempts as JSON (schemas/task.schema.json).")
@click.pass_context
@handle_errors
def why(ctx: click.Context, run: str, task: str, as_json: bool) -> None:
    """Tell the story of TASK of RUN from the log: each attempt, how it ended, what comes next.

    \b
    Example:
      orchctl why last flaky
    """
    from orchctl import render

    client = _client(ctx)
    info = client.call(p.TaskInfo(run=run, task=task))
    assert isinstance(info, p.TaskReply)
    if as_json:
        _print_json(info)
        return
    view = info.task
    click.echo(f"{view.id} of {info.run_id}: {view.state}, {view.attempts} attempt{'s' * (view.attempts != 1)} "
               f"(at most {view.max_attempts})")
    reply = client.call(p.Events(run=info.run_id, task=task, limit=10_000))
    assert isinstance(reply, p.EventsReply)
    for row in reply.events:
        line = render.story_line(row, ev.decode(row.kind, row.payload))
        if line:
            click.echo(line)
    click.echo(f"next: {render.what_next(view)}")


@cli.command()
@click.argument("run", shell_complete=complete_run)
@click.argument("task", shell_complete=complete_task)
@click.pass_context
@handle_errors
def diff(ctx: click.Context, run: str, task: str) -> None:
    """Show what TASK of RUN changed, against the run's base commit.

    \b
    Example:
      orchctl diff last fix-auth | less -R
    """
    reply = _client(ctx).call(p.Diff(run=run, task=task))
    assert isinstance(reply, p.DiffReply)
    if not reply.diff:
        click.echo(f"{reply.task} changed nothing (branch {reply.branch})", err=True)
    click.echo(reply.diff, nl=False)


@cli.command()
@click.argument("run", shell_complete=complete_run)
@click.option("--into", help="The branch to merge into (default: the branch checked out in the plan's repository).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@handle_errors
def merge(ctx: click.Context, run: str, into: str | None, as_json: bool) -> None:
    """Merge the branches of RUN's completed tasks, one by one; stop at a conflict.

    \b
    Example:
      orchctl merge last --into main
    """
    reply = _client(ctx).call(p.Merge(run=run, into=into), timeout=600.0)
    assert isinstance(reply, p.MergeReply)
    if as_json:
        _print_json(reply)
    several = len(reply.results) > 1
    for r in reply.results:
        where = f" ({r.repo})" if several else ""
        if not as_json:
            for task_id in r.merged:
                click.echo(f"merged {task_id} into {r.into}{where}")
            if r.unchanged:
                click.echo(f"nothing to merge from {len(r.unchanged)} task(s){where}: {', '.join(r.unchanged)}")
        if r.conflict is not None:
            c = r.conflict
            with_ = f" with {', '.join(c.with_tasks)} (merged before it)" if c.with_tasks else ""
            click.echo(f"orchctl: conflict{where}: task {c.task} conflicts{with_} in {', '.join(c.files)}; the "
                       f"merge of {c.task} was aborted and the rest not attempted; {len(r.merged)} task(s) merged. "
                       f"Resolve it by hand: git merge orch/{reply.run_id}/{c.task}", err=True)
            ctx.exit(1)


@cli.command()
@click.argument("run", shell_complete=complete_run)
@click.option("--branches", is_flag=True, help="Also delete the tasks' branches (orch/RUN/TASK).")
@click.pass_context
@handle_errors
def clean(ctx: click.Context, run: str, branches: bool) -> None:
    """Remove the worktrees of a finished RUN (and its branches with --branches).

    \b
    Example:
      orchctl clean last --branches
    """
    reply = _client(ctx).call(p.Clean(run=run, branches=branches), timeout=600.0)
    assert isinstance(reply, p.Done)
    click.echo(reply.message)


def _change(ctx: click.Context, request: p.Cancel | p.Retry) -> None:
    reply = _client(ctx).call(request)
    assert isinstance(reply, p.Done)
    click.echo(reply.message)


@cli.command()
@click.argument("run", shell_complete=complete_run)
@click.argument("task", required=False, shell_complete=complete_task)
@click.pass_context
@handle_errors
def cancel(ctx: click.Context, run: str, task: str | None) -> None:
    """Cancel RUN, or one TASK of it: running agents get TERM, then KILL.

    \b
    Example:
      orchctl cancel last
    """
    _change(ctx, p.Cancel(run=run, task=task))


@cli.command()
@click.argument("run", shell_complete=complete_run)
@click.argument("task", required=False, shell_complete=complete_task)
@click.pass_context
@handle_errors
def retry(ctx: click.Context, run: str, task: str | None) -> None:
    """Run the failed or cancelled tasks of RUN (or one TASK) again, with a fresh retry budget.

    \b
    Example:
      orchctl retry last flaky-test
    """
    _change(ctx, p.Retry(run=run, task=task))


@cli.command()
@click.option("--run", help="Only this run's events.", shell_complete=complete_run)
@click.option("--task", help="Only this task's events (with --run).", shell_complete=complete_task)
@click.option("--from", "from_seq", type=int, default=0, help="Start after this sequence number.")
@click.option("--follow", is_flag=True, help="Keep printing new events as they are recorded.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
@handle_errors
def events(ctx: click.Context, run: str | None, task: str | None, from_seq: int, follow: bool,
           as_json: bool) -> None:
    """Print the event log, oldest first.

    \b
    Example:
      orchctl events --run last --follow
    """
    client = _client(ctx)
    for rows in _follow(client, after=from_seq, run=run, task=task, wait=10.0 if follow else 0.0):
        for row in rows:
            if as_json:
                line = p.EventLine(seq=row.seq, ts=row.ts, run_id=row.run_id, task_id=row.task_id, kind=row.kind,
                                   event=row.payload)
                sys.stdout.buffer.write(_json.encode(line) + b"\n")
            else:
                click.echo(_event_line(row, ev.decode(row.kind, row.payload)))
        sys.stdout.flush()
        if not rows and not follow:
            return


@cli.command()
@click.option("--at", "at", type=int, help="The state as of this sequence number (default: the end).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (same shape as `status --json`).")
@click.pass_context
@handle_errors
def replay(ctx: click.Context, at: int | None, as_json: bool) -> None:
    """Rebuild the state of every run from the event log alone.

    \b
    Example:
      orchctl replay --at 120 --json
    """
    from orchctl import render

    reply = _client(ctx).call(p.Replay(at=at), timeout=120)
    assert isinstance(reply, p.StatusReply)
    if as_json:
        _print_json(reply)
    else:
        click.echo(f"state as of event {reply.seq}")
        render.console.print(render.runs_table(v.summary for v in reply.runs))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@handle_errors
def audit(ctx: click.Context, as_json: bool) -> None:
    """Verify the event log's hash chain; exit 1 and name the first bad event if it does not verify.

    \b
    Example:
      orchctl audit
    """
    reply = _client(ctx).call(p.Audit(), timeout=600)
    assert isinstance(reply, p.AuditReply)
    if as_json:
        _print_json(reply)
    elif reply.first_bad is None:
        click.echo(f"ok: {reply.events} events verified; head {reply.head[:16]}")
    else:
        click.echo(f"FAILED at event {reply.first_bad}: {reply.problem} ({reply.events} events before it verify)")
    if reply.first_bad is not None:
        sys.exit(1)


@cli.group()
def daemon() -> None:
    """Start, stop or inspect orchd.

    \b
    Example:
      orchctl daemon status --json
    """


def _daemon() -> tuple[Any, p.Pong | None]:
    """orch's paths, and the running daemon's Pong (None when nothing answers)."""
    from orchctl.connect import ping
    from orchd.paths import resolve

    paths = resolve()
    return paths, ping(paths)


@daemon.command("start")
@handle_errors
def daemon_start() -> None:
    """Start orchd in the background (no-op when it runs).

    \b
    Example:
      orchctl daemon start
    """
    from orchctl.connect import start_daemon

    paths, pong = _daemon()
    pong = pong or start_daemon(paths)
    click.echo(f"orchd is running (pid {pong.pid})")


@daemon.command("stop")
@handle_errors
def daemon_stop() -> None:
    """Stop orchd; running agents are stopped and retried when it starts again.

    \b
    Example:
      orchctl daemon stop
    """
    paths, pong = _daemon()
    if pong is None:
        click.echo("orchd is not running")
        return
    with p.Client(paths.address) as client:
        client.call(p.Shutdown())
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pong.pid, 0)
        except ProcessLookupError:
            click.echo(f"orchd stopped (pid {pong.pid})")
            return
        time.sleep(0.05)  # poll with a deadline: the daemon is not our child
    raise OrchError(f"orchd (pid {pong.pid}) did not stop within 30s", ErrorCode.INTERNAL)


@daemon.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@handle_errors
def daemon_status(as_json: bool) -> None:
    """Say whether orchd runs (exit 3 when it does not).

    \b
    Example:
      orchctl daemon status
    """
    paths, pong = _daemon()
    if pong is None:
        raise OrchError(f"orchd is not running (socket {paths.socket})", ErrorCode.UNAVAILABLE)
    if as_json:
        _print_json(pong)
    else:
        click.echo(f"orchd {pong.version} running, pid {pong.pid}, up {time.time() - pong.started_at:.0f}s, "
                   f"{pong.seq} events, socket {paths.socket}")


def main() -> None:
    """Entry point of `orchctl`."""
    cli(prog_name="orchctl")


if __name__ == "__main__":
    main()
