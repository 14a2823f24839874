"""Errors the suite raises for bad input, with messages that name the file, record and problem."""

from __future__ import annotations


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
