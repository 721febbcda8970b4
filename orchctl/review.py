"""Reviewing a run: results, logs, why, diff, merge, clean."""

from __future__ import annotations

import sys

import click

from orchctl.common import client_for, follow_log, handle_errors, print_json
from orchctl.completion import complete_run, complete_task
from orchd import events as ev
from orchd import protocol as p
from orchd import reports, views
from orchd.client import Client
from orchd.errors import ErrorCode, OrchError


@click.command()
@click.argument("run", shell_complete=complete_run)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (schemas/results.schema.json).")
@click.option(
    "--markdown", is_flag=True, help="Print a Markdown table to paste into a pull request."
)
@click.option(
    "--into",
    help="The branch to predict conflicts with (default: the branch checked out in the repository).",
)
@click.pass_context
@handle_errors
def results(ctx: click.Context, run: str, as_json: bool, markdown: bool, into: str | None) -> None:
    """Show what each task of RUN produced: state, attempts, duration, cost, files, checks, result;
    and which completed branches would conflict when merged.

    \b
    Example:
      orchctl results last --markdown >> pr-comment.md
    """
    from orchctl import render

    client = client_for(ctx)
    reply = client.call(p.Status(run=run), p.StatusReply)
    view = reply.runs[0]
    forecasts = _forecasts(client, view, into)
    if as_json:
        print_json(reports.RunResults(summary=view.summary, tasks=view.tasks, conflicts=forecasts))
        return
    lines = render.conflict_lines(forecasts or [])
    if markdown:
        click.echo(render.results_markdown(view, lines), nl=False)
        return
    render.show(render.results_table(view))
    render.show(render.summary_line(view.summary))
    for line in lines:
        click.echo(line)


def _forecasts(
    client: Client, view: views.RunView, into: str | None
) -> list[reports.ConflictForecast] | None:
    """The conflicts predicted between the run's completed branches, None for a run without any
    (or when they cannot be predicted: then it says why on stderr)."""
    if not any(t.branch and t.state == "completed" for t in view.tasks):
        return None
    try:
        reply = client.call(
            p.Conflicts(run=view.summary.run_id, into=into), p.ConflictsReply, timeout=600.0
        )
    except OrchError as exc:
        if exc.code is ErrorCode.UNAVAILABLE:
            raise
        click.echo(f"orchctl: conflicts not predicted: {exc.message}", err=True)
        return None
    return reply.repos


@click.command()
@click.argument("run", shell_complete=complete_run)
@click.argument("task", shell_complete=complete_task)
@click.option("-f", "--follow", is_flag=True, help="Keep printing output as the attempt writes it.")
@click.option("--attempt", type=int, help="Which attempt (1-based; default: the latest).")
@click.option(
    "--raw", is_flag=True, help="The output as the agent wrote it (no rendering of stream-json)."
)
@click.pass_context
@handle_errors
def logs(
    ctx: click.Context, run: str, task: str, follow: bool, attempt: int | None, raw: bool
) -> None:
    """Print the output of TASK of RUN: an agent's conversation, or the raw lines with --raw.

    \b
    Example:
      orchctl logs last hints-core -f
      orchctl logs last hints-core --attempt 1 --raw | jq .
    """
    from orchd.activity import Conversation

    client = client_for(ctx)
    info = client.call(p.TaskInfo(run=run, task=task), p.TaskReply)
    if not info.attempts:
        raise OrchError(f"task {task} has not started yet", ErrorCode.NOT_FOUND)
    n = attempt or info.attempts[-1].n
    chosen = next((a for a in info.attempts if a.n == n), None)
    if chosen is None:
        raise OrchError(
            f"task {task} has no attempt {n} (it has {len(info.attempts)})", ErrorCode.NOT_FOUND
        )
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
    for _ in follow_log(client, after=0, run=info.run_id, task=task, wait=0.2):
        drain()
        latest = client.call(p.TaskInfo(run=info.run_id, task=task), p.TaskReply)
        if next((a for a in latest.attempts if a.n == n), chosen).outcome is not None:
            drain(last=True)
            return


@click.command()
@click.argument("run", shell_complete=complete_run)
@click.argument("task", shell_complete=complete_task)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the task and its attempts as JSON (schemas/task.schema.json).",
)
@click.pass_context
@handle_errors
def why(ctx: click.Context, run: str, task: str, as_json: bool) -> None:
    """Tell the story of TASK of RUN from the log: each attempt, how it ended, what comes next.

    \b
    Example:
      orchctl why last flaky
    """
    from orchctl import story

    client = client_for(ctx)
    info = client.call(p.TaskInfo(run=run, task=task), p.TaskReply)
    if as_json:
        print_json(info)
        return
    # the task's events, the cancels and retries of the run that name it, orchd's stops and starts
    rows = _rows(client, p.Events(run=info.run_id, task=info.task.id, limit=10_000))
    rows += _rows(
        client,
        p.Events(run=info.run_id, kinds=["CancelRequested", "RetryRequested"], limit=10_000),
    )
    if rows:
        since, daemon = min(row.seq for row in rows), [kind.__name__ for kind in story.DAEMON]
        rows += _rows(client, p.Events(after=since, kinds=daemon, limit=10_000))
    rows.sort(key=lambda row: row.seq)
    events = [(row.ts, ev.decode(row.kind, row.payload)) for row in rows]
    click.echo(story.story(info.run_id, info.task, story.told(events, info.task.id)))


def _rows(client: Client, request: p.Events) -> list[ev.Row]:
    return client.call(request, p.EventsReply).events


@click.command()
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
    reply = client_for(ctx).call(p.Diff(run=run, task=task), p.DiffReply)
    if not reply.diff:
        click.echo(f"{reply.task} changed nothing (branch {reply.branch})", err=True)
    click.echo(reply.diff, nl=False)


@click.command()
@click.argument("run", shell_complete=complete_run)
@click.option(
    "--into",
    help="The branch to merge into (default: the branch checked out in the plan's repository).",
)
@click.option(
    "--verify",
    "checked",
    is_flag=True,
    help="Run each task's verify commands on the integrated tree after its merge; back out a "
    "merge that fails them.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (schemas/merge.schema.json).")
@click.pass_context
@handle_errors
def merge(ctx: click.Context, run: str, into: str | None, checked: bool, as_json: bool) -> None:
    """Merge the branches of RUN's completed tasks one by one, in plan order: a merge queue.

    A branch that conflicts (or that git refuses) is skipped, with the files and the tasks merged
    before it that touched them, and the queue goes on; the exit status is 1 when any was skipped.

    \b
    Example:
      orchctl merge last --into main --verify
    """
    # the checks of every merge may take their whole verify_timeout: no client-side limit short of a day
    timeout = 86400.0 if checked else 600.0
    reply = client_for(ctx).call(
        p.Merge(run=run, into=into, verify=checked), p.MergeReply, timeout=timeout
    )
    if as_json:
        print_json(reply)
    else:
        several = len(reply.results) > 1
        for r in reply.results:
            for line in _merge_lines(reply.run_id, r, f" ({r.repo})" if several else ""):
                click.echo(line, err=line.startswith("orchctl:"))
    if any(r.skipped for r in reply.results):
        sys.exit(1)


def _merge_lines(run_id: str, r: reports.MergeResult, where: str) -> list[str]:
    """What a merge queue did in one repository, in words (lines to stderr start `orchctl:`)."""
    lines = []
    for task_id in r.merged:
        checked = " (its checks passed on the integrated tree)" if task_id in r.verified else ""
        lines.append(f"merged {task_id} into {r.into}{where}{checked}")
    if r.unchanged:
        lines.append(
            f"nothing to merge from {len(r.unchanged)} task(s){where}: {', '.join(r.unchanged)}"
        )
    for s in r.skipped:
        by_hand = f"merge it by hand: git merge orch/{run_id}/{s.task}"
        if s.why == "conflict":
            with_ = f" with {', '.join(s.with_tasks)} (merged before it)" if s.with_tasks else ""
            what = f"task {s.task} conflicts{with_} in {', '.join(s.files)}; skipped, {by_hand}"
        elif s.why == "verify":
            what = f"task {s.task} merged, but {s.message}; the merge was backed out"
        else:
            what = f"task {s.task} skipped: {s.message}"
        lines.append(f"orchctl:{where} {what}")
    if r.skipped:
        lines.append(
            f"orchctl:{where} {len(r.merged)} task(s) merged into {r.into}, "
            f"{len(r.skipped)} skipped: {', '.join(s.task for s in r.skipped)}"
        )
    return lines


@click.command()
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
    reply = client_for(ctx).call(p.Clean(run=run, branches=branches), p.Done, timeout=600.0)
    click.echo(reply.message)
