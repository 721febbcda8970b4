"""One error root for orch. The code travels on the wire; the CLI maps it to an exit code."""

from __future__ import annotations

import enum


class ErrorCode(str, enum.Enum):
    """Stable error codes, shared by daemon and client."""

    BAD_PLAN = "bad_plan"
    BAD_REQUEST = "bad_request"
    VERSION_MISMATCH = "version_mismatch"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    LIMIT = "limit"
    UNAVAILABLE = "unavailable"
    STORAGE = "storage"  # the event log cannot be written (disk full, I/O error)
    INTERNAL = "internal"

    @property
    def exit_code(self) -> int:
        """Exit code of orchctl for this error: 2 bad input, 3 daemon unreachable, 1 otherwise."""
        if self in (
            ErrorCode.BAD_PLAN,
            ErrorCode.BAD_REQUEST,
            ErrorCode.NOT_FOUND,
            ErrorCode.LIMIT,
        ):
            return 2
        if self is ErrorCode.UNAVAILABLE:
            return 3
        return 1


class OrchError(Exception):
    """Base of every error orch raises on purpose."""

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str, code: ErrorCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message


class PlanError(OrchError):
    """A plan that cannot be run; the message names the file, line and field path."""

    code = ErrorCode.BAD_PLAN
