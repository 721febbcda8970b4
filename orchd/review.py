"""The git review operations on a run's branches: diff, merge, conflicts, clean.

They run git in the task's repository, never on the journal's thread; the dispatcher resolves
the run and records what they change.
"""

from __future__ import annotations

from orchd import branches, views, workspace
from orchd import protocol as p
from orchd import state as st
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
    text = branches.diff(ws, worktree=task.state != "completed", leave_out=task.spec.copy)
    if len(text) > max_bytes:
        text = (
            text[:max_bytes] + f"\n[orch: diff truncated; see `git diff {ws.base} {ws.branch}`]\n"
        )
    return p.DiffReply(run_id=run.run_id, task=task.spec.id, branch=ws.branch, diff=text)


def completed(ctx: Context, run: st.RunState) -> dict[str, list[branches.Mergeable]]:
    """The run's completed branches, by repository, in plan order.

    Raises:
        OrchError: the run has no worktrees, or its branches were removed.
    """
    with ctx.journal.lock:
        if run.branches_removed:
            raise OrchError(
                f"run {run.run_id}'s branches were removed by `orchctl clean --branches`",
                ErrorCode.NOT_FOUND,
            )
        if not any(t.spec.repo for t in run.tasks.values()):
            raise OrchError(
                f'run {run.run_id} has no worktrees to merge (isolation = "none")',
                ErrorCode.NOT_FOUND,
            )
        by_repo: dict[str, list[branches.Mergeable]] = {}
        for t in run.tasks.values():
            ws = workspace.workspace_of(ctx.paths.worktrees, run.run_id, t.spec)
            if ws is not None and t.state == "completed":
                by_repo.setdefault(ws.repo, []).append(
                    branches.Mergeable(
                        t.spec.id,
                        ws,
                        views.task_view(t, run).files,
                        checks=t.spec.verify,
                        timeout=t.spec.verify_timeout,
                        env={**t.spec.env, "ORCH_RUN_ID": run.run_id, "ORCH_TASK_ID": t.spec.id},
                        copy=t.spec.copy,
                        setup=t.spec.setup,
                        workdir=t.spec.cwd,
                    )
                )
    return by_repo


def merge(ctx: Context, run: st.RunState, into: str | None, verify: bool) -> p.MergeReply:
    """Merge the run's completed branches into `into` (each repository's checked-out branch), a
    repository after another; with `verify`, check the integrated tree after each merge."""
    by_repo = completed(ctx, run)
    if verify and not any(m.checks for done in by_repo.values() for m in done):
        raise OrchError(
            f"run {run.run_id} has no verify commands to run after each merge: set `verify` in "
            "the plan, or merge without --verify",
            ErrorCode.BAD_REQUEST,
        )
    results = [branches.merge(repo, into, done, verify) for repo, done in by_repo.items()]
    return p.MergeReply(run_id=run.run_id, results=results)


def conflicts(ctx: Context, run: st.RunState, into: str | None) -> p.ConflictsReply:
    """Which completed branches would conflict with each other or with `into`, per repository."""
    by_repo = completed(ctx, run)
    repos = [branches.forecast(repo, into, done) for repo, done in by_repo.items()]
    return p.ConflictsReply(run_id=run.run_id, repos=repos)


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


def remove(spaces: list[workspace.Workspace], branches_too: bool) -> int:
    """Remove the worktrees (and the branches, with `branches_too`); return how many were there."""
    return sum(branches.remove(ws, branches_too) for ws in spaces)
