"""Reading many records, turning bad ones into a clear error or a counted, logged skip."""

from __future__ import annotations

import logging
from typing import Callable, Iterable, TypeVar

from .errors import RecordError

log = logging.getLogger("ecg_data")
T = TypeVar("T")

ON_BAD_RECORD = ("error", "skip")


def read_all(records: Iterable[str], reader: Callable[[str], T], on_bad_record: str, skipped: list[dict]) -> list[T]:
    """Apply ``reader`` to each record; a :class:`RecordError` is raised, or with ``on_bad_record='skip'``
    logged as a warning and appended to ``skipped`` (so the run's log counts it)."""
    if on_bad_record not in ON_BAD_RECORD:
        raise ValueError(f"on_bad_record must be one of {ON_BAD_RECORD}, not {on_bad_record!r}")
    out = []
    for rec in records:
        try:
            out.append(reader(rec))
        except RecordError as exc:
            if on_bad_record == "error":
                raise
            log.warning("skipping bad record %s", exc)
            skipped.append({"record": str(rec), "path": exc.path, "problem": exc.problem})
    return out
