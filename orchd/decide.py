"""What happens to a task after an attempt ends: one pure decision, read as a table.

A session gathers what is known of its ended attempt (`Ended`: how its process
exited, whether orch stopped it and why, and what its output says: the adapter's
reading of the agent's stream, the preparing wrapper's last words, or the error
that kept it from starting), with how the task's checks went when its agent succeeded.
`decide` turns that, the task's folded state and the
time into the events to record; the run actor records them and carries them out
(a `TaskRetrying` arms a timer at its `due_at`; a terminal event closes the task).
Nothing here does I/O or reads a clock.

| how the attempt ended (first row that matches)       | outcome   | the task                                     |
|------------------------------------------------------|-----------|----------------------------------------------|
| orch stopped it: the user cancelled                  | cancelled | cancelled                                    |
| orch stopped it: its timeout passed                  | timeout   | retrying after backoff (a retry spent), else failed |
| its output says it succeeded (and its checks passed) | success   | completed                                    |
| the user asked to cancel meanwhile                   | cancelled | cancelled                                    |
| it succeeded, but a check could not be started       | permanent | failed (no retry installs it)                |
| orch stopped it: orchd stopped with --end-sessions   | interrupted | retrying at once (the next start), no retry spent, never failed for it |
| its output says: permanent (auth, billing, ...)      | permanent | failed, with what to do                      |
| it succeeded, but a check failed or timed out        | verify_failed | retrying after backoff (a retry spent), else failed; the next attempt is told why |
| nothing says how it ended (lost)                     | lost      | retrying at once, no retry spent; the MAX_LOST-th lost attempt fails it |
| it failed while its disk was full                    | disk_full | retrying after backoff, no retry spent (the first MAX_DISK_FULL-1 times) |
| its output names a reset time (park)                 | park      | retrying at that time (at most MAX_PARK ahead), no retry spent; from the (MAX_PARKS+1)-th park in a row a retry is spent |
| orch deferred it: rate-limited before any answer     | deferred  | retrying at once (its provider paused), no retry spent; from the (MAX_DEFERRALS+1)-th in a row a retry is spent |
| anything else (retry)                                | retry     | retrying after backoff (a retry spent), else failed |
"""

from __future__ import annotations

import random
import signal

import msgspec

from orchd import backoff
from orchd import events as ev
from orchd.plan import TaskSpec
from orchd.state import TaskState
from orchd.streams.base import (
    AUTH,
    BILLING,
    OVERLOAD,
    RATE_LIMIT,
    Answered,
    ApiError,
    Limit,
    Signal,
    Spend,
)

# How an attempt ended. Adapters read the first four from an agent's output.
SUCCESS, RETRY, PARK, PERMANENT = "success", "retry", "park", "permanent"
# ... and these come from orch itself: it stopped the attempt, or nothing says how it ended.
TIMEOUT, CANCELLED, LOST = "timeout", "cancelled", "lost"
INTERRUPTED = "interrupted"  # orchd ended it as it stopped (`orchctl daemon stop --end-sessions`)
DISK_FULL = "disk_full"  # the attempt failed while its disk had no room: not its fault
VERIFY_FAILED = "verify_failed"  # the agent succeeded, but the task's checks did not pass
STALLED = "stalled"  # why orch stopped an attempt: no output for `stall` (recorded as a timeout)
# ... or orch stopped it before its provider answered it, for want of the provider's capacity
DEFERRED = "deferred"
RETRYABLE = frozenset({RETRY, TIMEOUT, VERIFY_FAILED})  # outcomes that spend a retry
# orch's doing, not the task's: an attempt more, not a retry
FREE = frozenset({LOST, INTERRUPTED, DEFERRED})

MAX_LOST = 100  # lost attempts spend no retry (orch's trouble, not the task's); a task that keeps
# losing them (an agent that takes orch down with it, a node that keeps dying) fails in the end
MAX_DISK_FULL = 5  # attempts failed on a full disk that spend no retry; later ones do
MAX_PARKS = 3  # parks in a row that spend no retry; later ones do (a misread reset cannot loop)
MAX_DEFERRALS = 10  # deferrals in a row that spend no retry; later ones do
MAX_PARK = 7 * 24 * 3600.0  # the longest a park waits (a weekly usage limit), whatever was read

SIGNALS = {sig.value: sig.name for sig in signal.Signals}


class Exit(msgspec.Struct, frozen=True):
    """How an attempt's process ended."""

    exit_code: int | None
    signal: int | None
    log_path: str
    log_end: int | None = None  # where the agent's own output ends in the log (checks follow it)


class Outcome(msgspec.Struct, frozen=True):
    """What an ended attempt's output says (or orch knows) of how it ended, with what the agent reported."""

    outcome: str
    reason: str = ""
    report: ev.AgentReport = ev.AgentReport()
    park_until: float | None = None  # for PARK: when the provider said to come back
    verify: ev.VerifyResult | None = None  # how the task's checks went, when they ran


class Ended(msgspec.Struct, frozen=True):
    """Everything known of one ended attempt: what `decide` decides from."""

    attempt: int
    reading: Outcome  # what its output says (or LOST when nothing does)
    exit: Exit | None = None  # None: it never started, or its exit status is lost
    stopped: str | None = None  # CANCELLED, TIMEOUT, STALLED, INTERRUPTED: orch stopped it, and why
    duration: float = 0.0


def describe_exit(exit: Exit) -> str:
    """`exit code 3` or `killed by SIGKILL`."""
    if exit.signal is not None:
        return f"killed by {SIGNALS.get(exit.signal, f'signal {exit.signal}')}"
    return f"exit code {exit.exit_code}"


def outcome(task: TaskState, ended: Ended, timeout: float) -> Outcome:
    """How the attempt ended, all things considered (the table's first column)."""
    reading = ended.reading
    if ended.stopped == CANCELLED:
        return _instead(reading, CANCELLED, "cancelled by the user")
    if ended.stopped == TIMEOUT:
        return _instead(reading, TIMEOUT, f"timed out after {timeout:g}s")
    if ended.stopped == STALLED:
        stall = f"{task.spec.stall:g}s" if task.spec.stall else "its stall time"
        return _instead(reading, TIMEOUT, f"stalled: no output for {stall}")
    reading = checked(reading)
    if task.cancel_requested and reading.outcome != SUCCESS:
        return _instead(reading, CANCELLED, "cancelled by the user")
    if ended.stopped == INTERRUPTED and reading.outcome != SUCCESS:
        # what it did is kept (a resumed session goes on from it); it never counts against the task
        return _instead(
            reading, INTERRUPTED, "ended as orchd stopped (`orchctl daemon stop --end-sessions`)"
        )
    return reading


def _instead(reading: Outcome, outcome: str, reason: str) -> Outcome:
    """`outcome` for `reason`, keeping what the attempt's output reported (its cost, its checks)."""
    return Outcome(outcome, reason=reason, report=reading.report, verify=reading.verify)


def checked(reading: Outcome) -> Outcome:
    """The reading of an attempt once its checks have run: the agent's own verdict first (a
    failure stays one), then the checks'. Passed: success. Failed or timed out: VERIFY_FAILED,
    which spends a retry like RETRY. A check that cannot be started: PERMANENT."""
    checks = reading.verify
    if reading.outcome != SUCCESS or checks is None or checks.passed:
        return reading
    if checks.result == "not_found":
        reason = f"{checks.reason} (is it installed, and on orchd's PATH?)"
        return msgspec.structs.replace(reading, outcome=PERMANENT, reason=reason)
    return msgspec.structs.replace(reading, outcome=VERIFY_FAILED, reason=checks.reason)


def decide(
    run_id: str, task: TaskState, ended: Ended, now: float, rand: random.Random | None = None
) -> list[ev.Event]:
    """The events that record how `task`'s attempt ended and what the task does next.

    `task` is the task as folded before these events; `rand` draws the backoff's jitter.
    """
    o = outcome(task, ended, task.spec.timeout)
    x = ended.exit
    finished = ev.AttemptFinished(
        run_id,
        task.spec.id,
        ended.attempt,
        o.outcome,
        exit_code=x.exit_code if x else None,
        signal=x.signal if x else None,
        reason=o.reason,
        duration=round(ended.duration, 6),
        report=o.report,
        verify=o.verify,
    )
    return [finished, _next(run_id, task, o, now, rand)]


def _next(
    run_id: str, task: TaskState, o: Outcome, now: float, rand: random.Random | None
) -> ev.Event:
    tid = task.spec.id
    if o.outcome == SUCCESS:
        return ev.TaskCompleted(run_id, tid)
    if o.outcome == CANCELLED:
        return ev.TaskCancelled(run_id, tid)
    if o.outcome == PERMANENT:
        return ev.TaskFailed(run_id, tid, reason=o.reason)
    if o.outcome == INTERRUPTED:  # the user stopped orchd: the next start runs it again
        return _retrying(run_id, tid, o.reason, now, 0.0, spends=False)
    if o.outcome == LOST:
        if _ended_so(task, LOST) + 1 >= MAX_LOST:
            return ev.TaskFailed(run_id, tid, reason=f"{o.reason} (lost {MAX_LOST} attempts)")
        return _retrying(run_id, tid, o.reason, now, 0.0, spends=False)
    if o.outcome == DISK_FULL and _ended_so(task, DISK_FULL) + 1 < MAX_DISK_FULL:
        delay = backoff.delay(task.spec.backoff, _ended_so(task, DISK_FULL) + 1, rand)
        return _retrying(run_id, tid, o.reason, now, delay, spends=False)
    if o.outcome == PARK and o.park_until is not None:
        wait = min(max(0.0, o.park_until - now), MAX_PARK)
        if _parks_in_a_row(task) < MAX_PARKS:
            return _retrying(run_id, tid, o.reason, now, wait, spends=False)
        reason = f"{o.reason} (parked {MAX_PARKS + 1} times in a row: counted as a retry)"
        if task.retries_spent < task.spec.max_retries:
            return _retrying(run_id, tid, reason, now, wait, spends=True)
        return ev.TaskFailed(run_id, tid, reason=_gave_up(reason, task))
    if o.outcome == DEFERRED and _in_a_row(task, DEFERRED) < MAX_DEFERRALS:
        return _retrying(run_id, tid, o.reason, now, 0.0, spends=False)
    if task.retries_spent < task.spec.max_retries:  # retry, timeout, a park without a time
        delay = backoff.delay(task.spec.backoff, task.retries_spent + 1, rand)
        return _retrying(run_id, tid, o.reason, now, delay, spends=True)
    return ev.TaskFailed(run_id, tid, reason=_gave_up(o.reason, task))


def lost_in_restart(run_id: str, task: TaskState, attempt: int, now: float) -> list[ev.Event]:
    """An attempt that was running when orchd stopped, of which nothing is left: lost."""
    reason = "orchd restarted while the attempt ran; its outcome is lost"
    return decide(run_id, task, Ended(attempt, Outcome(LOST, reason=reason)), now)


def _retrying(
    run_id: str, task_id: str, reason: str, now: float, delay: float, spends: bool
) -> ev.TaskRetrying:
    return ev.TaskRetrying(
        run_id,
        task_id,
        due_at=now + delay,
        delay=round(delay, 6),
        reason=reason,
        spends_retry=spends,
    )


def _gave_up(reason: str, task: TaskState) -> str:
    attempts = len(task.attempts)
    return f"{reason} (gave up after {attempts} attempt{'s' * (attempts != 1)})"


def _ended_so(task: TaskState, outcome: str) -> int:
    """How many of the task's earlier attempts ended with `outcome`."""
    return sum(1 for a in task.attempts if a.outcome == outcome)


def _parks_in_a_row(task: TaskState) -> int:
    """How many of the task's latest ended attempts parked, one after the other."""
    return _in_a_row(task, PARK)


def _in_a_row(task: TaskState, outcome: str) -> int:
    """How many of the task's latest ended attempts ended with `outcome`, one after the other."""
    count = 0
    for attempt in reversed(task.attempts):
        if attempt.outcome is None:  # the attempt that just ended: not folded yet
            continue
        if attempt.outcome != outcome:
            break
        count += 1
    return count


# ------------------------------------------------------------ while an attempt runs


class Hold(msgspec.Struct, frozen=True):
    """A provider to hold: no new session of it starts until `until` (None: until the user acts)."""

    cause: str
    reason: str
    until: float | None = None


class Live(msgspec.Struct, frozen=True):
    """What to do about a signal from a running attempt's stream."""

    stop: Outcome | None = None  # end the attempt now, as this
    hold: Hold | None = None  # hold its provider
    throttle: bool = False  # the provider rate-limits or is overloaded: fewer sessions of it
    pause: float | None = None  # ... and none new for this many seconds (its Retry-After)
    answered: bool = False  # the provider serves the attempt: it may serve one more


def live(
    signal: Signal,
    task: TaskSpec,
    spent_before: float,
    now: float,
    hint: str = "",
    answered: bool = True,
) -> Live | None:
    """What a signal of a running attempt of `task` calls for (None: nothing).

    `spent_before`: what the task's earlier attempts spent; `hint`: what the user should do about
    a rejected credential, in this agent's words; `answered`: whether the provider has answered
    the attempt yet.

    | signal                                  | the attempt                      | its provider        |
    |-----------------------------------------|----------------------------------|---------------------|
    | API error: auth or billing (even while the agent retries it) | stopped: permanent, with the hint | held until the user acts |
    | a usage limit with its reset time       | stopped: parked until the reset  | held until the reset |
    | a rate limit the agent retries, before the provider's first answer | stopped: deferred (it has done nothing yet: it waits for room, not at the provider's door) | throttled; paused for its Retry-After |
    | API error: rate limit or overload       | goes on (the agent retries)      | throttled; paused for its Retry-After |
    | the provider's first answer             | goes on                          | serves one more: its limit may grow |
    | spend past the task's budget            | stopped: permanent               |                     |
    """
    if isinstance(signal, Answered):
        return Live(answered=True)
    if isinstance(signal, ApiError):
        if signal.category in (AUTH, BILLING):
            what = "credentials rejected" if signal.category == AUTH else "billing refused"
            status = f" ({signal.status})" if signal.status else ""
            reason = f"{task.agent}: {what}{status}: {signal.message or signal.category}"
            reason += f" ({hint})" if hint else ""
            return Live(stop=Outcome(PERMANENT, reason=reason), hold=Hold(signal.category, reason))
        if signal.category == RATE_LIMIT and signal.retrying and not answered:
            reason = f"{task.agent}: rate limited before its first answer: deferred"
            stop = Outcome(DEFERRED, reason=reason)
            return Live(stop=stop, throttle=True, pause=signal.retry_in)
        if signal.category in (RATE_LIMIT, OVERLOAD):
            pause = signal.retry_in if signal.category == RATE_LIMIT else None
            return Live(throttle=True, pause=pause)
        return None
    if isinstance(signal, Limit):
        if signal.resets_at is None or signal.resets_at <= now:
            return Live(throttle=True)
        until = min(signal.resets_at, now + MAX_PARK)
        reason = f"{task.agent}: {signal.message or 'usage limit reached'}"
        return Live(
            stop=Outcome(PARK, reason=reason, park_until=until),
            hold=Hold("usage_limit", reason, until),
        )
    if isinstance(signal, Spend) and task.budget_usd is not None and signal.cost_usd:
        spent = spent_before + signal.cost_usd
        if spent >= task.budget_usd:
            reason = f"budget ${task.budget_usd:g} reached (${spent:.2f} spent)"
            return Live(stop=Outcome(PERMANENT, reason=reason))
    return None


def over_budget(budget: float | None, spent: float | None) -> str | None:
    """The reason a session may not start, when `spent` has reached `budget`; else None."""
    if budget is None or spent is None or spent < budget:
        return None
    return f"not started: budget ${budget:g} reached (${spent:.2f} spent)"
