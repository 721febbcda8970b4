"""The git review operations on a run's branches: diff, merge, clean.

They run git in the task's repository, never on the journal's thread; the dispatcher resolves
the run and records what they change.
"""

from __future__ import annotations

from orchd import protocol as p
from orchd import state as st
from orchd import views, workspace
from orchd.actors.context import Context
from orchd.errors import ErrorCode, OrchError


def workspace_for(ctx: Context, run: st.RunState, task: st.TaskState) -> workspace.Workspace:
    """The task's worktree and branch; refused for a task that runs in the workdir itself."""
    ws = workspace.workspace_of(ctx.paths.worktrees, run.run_id, task.spec)
    if ws is None:
        raise OrchError(
            f'task {task.spec.id} of {run.run_id} runs in the workdir itself (isolation = "none"): '
            "it has no branch; look at the workdir with git",
            ErrorCode.NOT_FOUND,
        )
    return ws


def diff(ctx: Context, run: st.RunState, task: st.TaskState, max_bytes: int) -> p.DiffReply:
    """The task's change: its branch against the base (the worktree, while it has not completed)."""
    ws = workspace_for(ctx, run, task)
    text = workspace.diff(ws, worktree=task.state != "completed", leave_out=task.spec.copy)
    if len(text) > max_bytes:
        text = (
            text[:max_bytes] + f"\n[orch: diff truncated; see `git diff {ws.base} {ws.branch}`]\n"
        )
    return p.DiffReply(run_id=run.run_id, task=task.spec.id, branch=ws.branch, diff=text)


def merge(ctx: Context, run: st.RunState, into: str | None) -> p.MergeReply:
    """Merge the run's completed branches into `into` (each repository's checked-out branch)."""
    with ctx.journal.lock:
        if run.branches_removed:
            raise OrchError(
                f"run {run.run_id}'s branches were removed by `orchctl clean --branches`",
                ErrorCode.NOT_FOUND,
            )
        by_repo: dict[str, list[tuple[str, workspace.Workspace, list[str]]]] = {}
        for t in run.tasks.values():
            ws = workspace.workspace_of(ctx.paths.worktrees, run.run_id, t.spec)
            if ws is not None and t.state == "completed":
                by_repo.setdefault(ws.repo, []).append(
                    (t.spec.id, ws, views.task_view(t, run).files)
                )
        if not any(t.spec.repo for t in run.tasks.values()):
            raise OrchError(
                f'run {run.run_id} has no worktrees to merge (isolation = "none")',
                ErrorCode.NOT_FOUND,
            )
    results = []
    for repo, done in by_repo.items():  # one repository after another; stop at a conflict
        results.append(workspace.merge(repo, into, done))
        if results[-1].conflict is not None:
            break
    return p.MergeReply(run_id=run.run_id, results=results)


def workspaces_to_clean(ctx: Context, run: st.RunState) -> list[workspace.Workspace]:
    """The run's worktrees, for `clean`; refused while the run is running."""
    with ctx.journal.lock:
        if run.state == "running":
            raise OrchError(
                f"run {run.run_id} is still running: wait for it, or `orchctl cancel {run.run_id}`",
                ErrorCode.CONFLICT,
            )
        return [
            ws
            for t in run.tasks.values()
            if (ws := workspace.workspace_of(ctx.paths.worktrees, run.run_id, t.spec))
        ]


def remove(spaces: list[workspace.Workspace], branches: bool) -> int:
    """Remove the worktrees (and the branches, with `branches`); return how many were there."""
    return sum(workspace.remove(ws, branches) for ws in spaces)
