"""Errors the data layer raises: each names the file and what is wrong with it."""

from __future__ import annotations


class DataError(Exception):
    """Base class for data problems a user can fix (missing database, bad record, bad option)."""


class DatabaseNotFoundError(DataError):
    """A database is neither under the data root nor downloadable."""


class RecordError(DataError):
    """A record on disk is truncated, corrupt or unreadable; the message names the file."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}")
