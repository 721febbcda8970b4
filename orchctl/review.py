"""Reviewing a run: results, logs, why, diff, merge, clean."""

from __future__ import annotations

import sys

import click

from orchctl.common import client_for, follow_log, handle_errors, print_json
from orchctl.completion import complete_run, complete_task
from orchd import events as ev
from orchd import protocol as p
from orchd.errors import ErrorCode, OrchError


@click.command()
@click.argument("run", shell_complete=complete_run)
@click.option(
    "--json", "as_json", is_flag=True, help="Print JSON (one run of schemas/status.schema.json)."
)
@click.option(
    "--markdown", is_flag=True, help="Print a Markdown table to paste into a pull request."
)
@click.pass_context
@handle_errors
def results(ctx: click.Context, run: str, as_json: bool, markdown: bool) -> None:
    """Show what each task of RUN produced: state, attempts, duration, cost, files, result.

    \b
    Example:
      orchctl results last --markdown >> pr-comment.md
    """
    from orchctl import render

    reply = client_for(ctx).call(p.Status(run=run))
    assert isinstance(reply, p.StatusReply)
    view = reply.runs[0]
    if as_json:
        print_json(view)
    elif markdown:
        click.echo(render.results_markdown(view), nl=False)
    else:
        render.show(render.results_table(view))
        render.show(render.summary_line(view.summary))


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
    info = client.call(p.TaskInfo(run=run, task=task))
    assert isinstance(info, p.TaskReply)
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
        latest = client.call(p.TaskInfo(run=info.run_id, task=task))
        assert isinstance(latest, p.TaskReply)
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
    info = client.call(p.TaskInfo(run=run, task=task))
    assert isinstance(info, p.TaskReply)
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


def _rows(client: p.Client, request: p.Events) -> list[ev.Row]:
    reply = client.call(request)
    assert isinstance(reply, p.EventsReply)
    return reply.events


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
    reply = client_for(ctx).call(p.Diff(run=run, task=task))
    assert isinstance(reply, p.DiffReply)
    if not reply.diff:
        click.echo(f"{reply.task} changed nothing (branch {reply.branch})", err=True)
    click.echo(reply.diff, nl=False)


@click.command()
@click.argument("run", shell_complete=complete_run)
@click.option(
    "--into",
    help="The branch to merge into (default: the branch checked out in the plan's repository).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@handle_errors
def merge(ctx: click.Context, run: str, into: str | None, as_json: bool) -> None:
    """Merge the branches of RUN's completed tasks, one by one; stop at a conflict.

    \b
    Example:
      orchctl merge last --into main
    """
    reply = client_for(ctx).call(p.Merge(run=run, into=into), timeout=600.0)
    assert isinstance(reply, p.MergeReply)
    if as_json:
        print_json(reply)
    several = len(reply.results) > 1
    for r in reply.results:
        where = f" ({r.repo})" if several else ""
        if not as_json:
            for task_id in r.merged:
                click.echo(f"merged {task_id} into {r.into}{where}")
            if r.unchanged:
                click.echo(
                    f"nothing to merge from {len(r.unchanged)} task(s){where}: {', '.join(r.unchanged)}"
                )
        if r.conflict is not None:
            c = r.conflict
            with_ = f" with {', '.join(c.with_tasks)} (merged before it)" if c.with_tasks else ""
            click.echo(
                f"orchctl: conflict{where}: task {c.task} conflicts{with_} in {', '.join(c.files)}; the "
                f"merge of {c.task} was aborted and the rest not attempted; {len(r.merged)} task(s) merged. "
                f"Resolve it by hand: git merge orch/{reply.run_id}/{c.task}",
                err=True,
            )
            ctx.exit(1)


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
    reply = client_for(ctx).call(p.Clean(run=run, branches=branches), timeout=600.0)
    assert isinstance(reply, p.Done)
    click.echo(reply.message)
