"""Shell completion: `orchctl completion bash|zsh|fish`, and run and task ids asked of orchd.

The candidates come from the running daemon with a short timeout; completion
never starts orchd and never prints an error: no daemon, no candidates.
"""

from __future__ import annotations

from typing import Any

import click
from click.shell_completion import CompletionItem, get_completion_class

ASK_TIMEOUT = 1.0  # seconds: a shell waits for its completions
SHELLS = ("bash", "zsh", "fish")


def _ask(request: Any) -> Any:
    """The daemon's reply to `request`, or None when it does not answer quickly (or at all)."""
    try:
        from orchd.client import Client
        from orchd.paths import resolve

        with Client(resolve().address, timeout=ASK_TIMEOUT) as client:
            return client.call(request)
    except Exception:  # a shell shows whatever completion prints: never an error
        return None


def complete_run(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Run ids that start with `incomplete`, newest first, with each run's name and state."""
    from orchd.protocol import Runs, RunsReply

    reply = _ask(Runs())
    if not isinstance(reply, RunsReply):
        return []
    runs = sorted(reply.runs, key=lambda r: r.submitted_at, reverse=True)
    items = [
        CompletionItem(r.run_id, help=f"{r.name}: {r.state}, {r.tasks} tasks")
        for r in runs
        if r.run_id.startswith(incomplete)
    ]
    if "last".startswith(incomplete) and runs:
        items.append(CompletionItem("last", help=f"the newest run ({runs[0].run_id})"))
    return items


def complete_task(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Task ids of the run named earlier on the command line that start with `incomplete`."""
    from orchd.protocol import Status, StatusReply

    run = ctx.params.get("run")
    if not run:
        return []
    reply = _ask(Status(run=run))
    if not isinstance(reply, StatusReply) or not reply.runs:
        return []
    return [
        CompletionItem(t.id, help=t.state)
        for t in reply.runs[0].tasks
        if t.id.startswith(incomplete)
    ]


@click.command()
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell: str) -> None:
    """Print the completion script for SHELL (run and task ids complete from orchd).

    \b
    Example:
      eval "$(orchctl completion bash)"                                  # ~/.bashrc
      eval "$(orchctl completion zsh)"                                   # ~/.zshrc
      orchctl completion fish > ~/.config/fish/completions/orchctl.fish
    """
    root = click.get_current_context().find_root()
    prog = root.info_name or "orchctl"
    var = f"_{prog.replace('-', '_').replace('.', '_')}_COMPLETE".upper()
    cls = get_completion_class(shell)
    assert cls is not None  # click ships all three
    click.echo(cls(root.command, {}, prog, var).source())
