"""Errors the suite raises for bad input, with messages that name the file, record and problem,
and how the command line shows them: one line, the traceback only when debugging."""

from __future__ import annotations

import os
import sys
import traceback


class DataError(ValueError):
    """A dataset file or record is unusable.

    The message always names the file, the record (when there is one) and the problem, so a user
    can find and fix it without a traceback.
    """

    def __init__(self, path: object, problem: str, record: object | None = None):
        self.path = str(path)
        self.record = None if record is None else str(record)
        self.problem = problem
        where = self.path if self.record is None else f"{self.path}, record {self.record!r}"
        super().__init__(f"{where}: {problem}")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key and the allowed values."""


class CheckpointError(ValueError):
    """A checkpoint file cannot be used; the message names the file, why, and what the user can do."""

    def __init__(self, path: object, problem: str, remedy: str):
        self.path = str(path)
        self.problem = problem
        self.remedy = remedy
        super().__init__(f"{self.path}: {problem}. {remedy}")


# The errors a user can fix (bad input, not a bug): the command line prints their one-line message;
# the traceback goes to the run's log file, and to the screen only when debugging is asked for.
USER_ERRORS = (ConfigError, DataError, CheckpointError)
DEBUG_ENV = "HIERAMAMBA_DEBUG"


def debug_enabled() -> bool:
    """`hieramamba --debug ...` (which sets HIERAMAMBA_DEBUG=1) or HIERAMAMBA_DEBUG=1|true|yes|on."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def report_error(exc: BaseException, prog: str = "hieramamba", status: int = 2) -> int:
    """Print `prog: error: <message>` as one line on stderr (after the traceback when debugging);
    returns the exit status to use (non-zero)."""
    if debug_enabled():
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    message = " ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or type(exc).__name__
    print(f"{prog}: error: {message}", file=sys.stderr)
    return status
