"""What the review operations report to the client: a merge queue's result, predicted conflicts,
and `orchctl results --json`. Wire types only (no git here), so that the client's side never
imports the git code.
"""

from __future__ import annotations

import msgspec

from orchd.events import VerifyResult
from orchd.views import RunSummary, TaskView


class Skipped(msgspec.Struct, frozen=True, omit_defaults=True):
    """A completed task's branch that the merge queue left out, and why.

    why: `conflict` (files: the conflicting files; with_tasks: the tasks merged before it that
    touched them), `git` (git refused for another reason; message: git's own words) or `verify`
    (the integrated tree failed the task's checks and its merge was backed out).
    """

    task: str
    why: str
    files: list[str] = []
    with_tasks: list[str] = []
    message: str = ""
    verify: VerifyResult | None = None


class MergeResult(msgspec.Struct, frozen=True):
    """What `orchctl merge` did in one repository."""

    repo: str
    into: str
    merged: list[str]  # task ids merged, in plan order
    unchanged: list[str]  # completed tasks whose branch had nothing new
    skipped: list[Skipped] = []  # in plan order; the queue went on past each
    verified: list[str] = []  # with --verify: merged tasks whose checks passed on the merged tree


class PredictedConflict(msgspec.Struct, frozen=True):
    """Two branches that would conflict if merged (`other` is a task id, or the target branch)."""

    task: str
    other: str
    other_is_target: bool
    files: list[str]


class ConflictForecast(msgspec.Struct, frozen=True):
    """The conflicts that merging a run's completed branches into `into` would meet, in one repository."""

    repo: str
    into: str
    branches: list[str]  # the completed tasks whose branches were checked
    conflicts: list[PredictedConflict]
    note: str = ""  # why nothing could be predicted, when nothing could (an old git)


class RunResults(msgspec.Struct, kw_only=True):
    """`orchctl results --json`: one run as `status` shows it, and the conflicts its completed
    branches would meet when merged (None for a run without branches)."""

    summary: RunSummary
    tasks: list[TaskView]
    conflicts: list[ConflictForecast] | None = None
