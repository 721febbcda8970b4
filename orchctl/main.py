"""orchctl: thin click commands that build a request, call orchd, render the reply.

Exit codes: 0 ok, 1 run failed or request failed, 2 bad input, 3 orchd unreachable.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from orchctl import daemonctl, history, review
from orchctl.common import client_for, follow_log, handle_errors, print_json
from orchctl.completion import complete_run, complete_task, completion
from orchctl.export import export
from orchd import protocol as p
from orchd.client import Client
from orchd.errors import ErrorCode, OrchError
from orchd.plan import STDIN


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--no-start",
    is_flag=True,
    help="Do not start orchd when none answers (also ORCH_NO_AUTOSTART=1).",
)
@click.option(
    "--debug", is_flag=True, help="Show the traceback of an unexpected error (also ORCH_DEBUG=1)."
)
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


for command in (
    completion,
    review.results,
    review.logs,
    review.why,
    review.diff,
    review.merge,
    review.clean,
    history.events,
    history.replay,
    history.audit,
    daemonctl.daemon,
    export,
):
    cli.add_command(command)


@cli.command()
@click.argument("plan", type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["toml", "json"]),
    help="The plan's format (default: what its suffix says, else guessed; JSON on stdin).",
)
@click.option(
    "--wait", "wait_", is_flag=True, help="Wait for the run to end; print progress lines."
)
@click.option("--watch", is_flag=True, help="Show the live view until the run ends.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the run's status when waiting).")
@click.pass_context
@handle_errors
def submit(
    ctx: click.Context, plan: str, fmt: str | None, wait_: bool, watch: bool, as_json: bool
) -> None:
    """Submit PLAN (TOML or JSON; - reads it from stdin) as a new run.

    A plan on stdin is JSON unless --format toml says otherwise; its relative paths
    (workdir, prompt_file) are relative to the current directory.

    \b
    Example:
      orchctl submit plan.toml --watch
      ./make-plan.py | orchctl submit - --wait
    """
    request = _read_plan(plan, fmt)
    client = client_for(ctx)
    reply = client.call(request, p.Submitted)
    for warning in reply.warnings:
        click.echo(f"orchctl: warning: {warning}", err=True)
    if not (wait_ or watch):
        if as_json:
            print_json(
                p.SubmittedRun(run_id=reply.run_id, tasks=reply.tasks, warnings=reply.warnings)
            )
        else:
            click.echo(
                f"submitted {reply.run_id} ({reply.tasks} tasks); follow it with: orchctl watch {reply.run_id}"
            )
        return
    if not as_json:
        click.echo(f"submitted {reply.run_id} ({reply.tasks} tasks)", err=True)
    _wait_for_run(client, reply.run_id, live=watch and not as_json, quiet=as_json)
    _finish(client, reply.run_id, as_json)


def _read_plan(plan: str, fmt: str | None) -> p.Submit:
    """The request that submits PLAN: a file, whose format its suffix says unless `fmt` does (orchd
    reads the suffix), or `-`, stdin: JSON unless `fmt` says, relative paths from here."""
    if plan == "-":
        if sys.stdin.isatty():
            click.echo("orchctl: reading the plan from stdin (end it with Ctrl-D)", err=True)
        source, base_dir, fmt = STDIN, os.getcwd(), fmt or "json"
        read = sys.stdin.buffer.read
    else:
        path = Path(plan)
        source, base_dir, read = str(path), str(path.absolute().parent), path.read_bytes
    try:
        text = read().decode("utf-8")
    except OSError as exc:
        raise OrchError(
            f"cannot read plan {source}: {exc.strerror or exc}", ErrorCode.BAD_PLAN
        ) from None
    except UnicodeDecodeError as exc:
        raise OrchError(
            f"{source}: the plan is not valid UTF-8 ({exc.reason} at byte {exc.start})",
            ErrorCode.BAD_PLAN,
        ) from None
    return p.Submit(plan=text, source=source, base_dir=base_dir, fmt=fmt)


def _wait_for_run(client: Client, run_id: str, *, live: bool, quiet: bool) -> None:
    from orchctl import live as lv
    from orchctl import render

    if quiet:  # only its end matters
        for rows in follow_log(client, run=run_id, kinds=["RunFinished"], wait=p.MAX_WAIT):
            if rows:
                return
    tracker = lv.RunTracker(run_id)
    if live and render.is_tty():
        try:
            ended = lv.watch(client.address, tracker, render.console)
        except KeyboardInterrupt:
            ended = False
        if not ended:
            click.echo(
                f"orchctl: stopped watching; {run_id} goes on (orchctl watch {run_id})", err=True
            )
            sys.exit(130)
        return
    last_line = ""
    for rows in follow_log(client, run=run_id, wait=5.0):
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


def _finish(client: Client, run_id: str, as_json: bool) -> None:
    from orchctl import render

    reply = client.call(p.Status(run=run_id), p.StatusReply)
    view = reply.runs[0]
    if as_json:
        print_json(view)
    else:
        render.show(render.final_report(view))
    sys.exit(0 if view.summary.state == "completed" else 1)


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
    reply = client_for(ctx).call(p.Status(run=run), p.StatusReply)
    if as_json:
        print_json(reply)
        return
    from orchctl import render  # rich is the heaviest import: not for --json

    if run is None:
        render.show(render.runs_table(v.summary for v in reply.runs))
    else:
        render.show(render.run_status(reply.runs[0]))
    if reply.held:
        render.console.print(f"[bold yellow]{reply.held}[/]", highlight=False)


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

    reply = client_for(ctx).call(p.Runs(), p.RunsReply)
    if as_json:
        print_json(reply)
    else:
        render.show(render.runs_table(reply.runs))


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
    _until_it_ends(ctx, run, live=True, as_json=False)


def _until_it_ends(ctx: click.Context, run: str, *, live: bool, as_json: bool) -> None:
    """Follow RUN (live, or quietly) until it ends; then its report, and the exit code it calls for."""
    client = client_for(ctx)
    reply = client.call(p.Status(run=run), p.StatusReply)
    run_id = reply.runs[0].summary.run_id
    _wait_for_run(client, run_id, live=live, quiet=not live)
    _finish(client, run_id, as_json)


@cli.command()
@click.argument("run", default="last", shell_complete=complete_run)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the run's status as JSON (schemas/status.schema.json).",
)
@click.pass_context
@handle_errors
def wait(ctx: click.Context, run: str, as_json: bool) -> None:
    """Wait for RUN (default: the newest) to end, then print its report; exit 0 if it completed, else 1.

    \b
    Example:
      orchctl wait last --json
    """
    _until_it_ends(ctx, run, live=False, as_json=as_json)


def _change(ctx: click.Context, request: p.Cancel | p.Retry) -> None:
    reply = client_for(ctx).call(request, p.Done)
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
@click.option("--json", "as_json", is_flag=True, help="Print JSON (schemas/dashboard.schema.json).")
@click.pass_context
@handle_errors
def dashboard(ctx: click.Context, as_json: bool) -> None:
    """Serve the live web dashboard on 127.0.0.1 and print its URL (it opens nothing).

    The URL carries a token: anyone with it can read every run while orchd runs. Asking again
    prints the same URL; a restarted orchd serves it again only once asked, with a new token.

    
    Example:
      orchctl dashboard
    """
    reply = client_for(ctx).call(p.Dashboard(), p.DashboardReply)
    if as_json:
        print_json(p.DashboardUrl(url=reply.url))
    else:
        click.echo(reply.url)


def main(args: list[str] | None = None) -> None:
    """Entry point of `orchctl` (`args`: instead of the command line's)."""
    cli(args=args, prog_name="orchctl")


if __name__ == "__main__":
    main()
