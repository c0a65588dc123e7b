"""Reading many records, turning bad ones into a clear error or a counted, logged skip."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Iterable, TypeVar

from .errors import DataError, RecordError

log = logging.getLogger("ecg_data")
T = TypeVar("T")

ON_BAD_RECORD = ("error", "skip")


def read_all(records: Iterable[str], reader: Callable[[str], T], on_bad_record: str, skipped: list[dict]) -> list[T]:
    """Apply ``reader`` to each record; a :class:`RecordError` is raised, or with ``on_bad_record='skip'``
    logged as a warning and appended to ``skipped`` (so the run's log counts it). DataError when every record was
    skipped: nothing is left to search or test on."""
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
    if not out and skipped:  # a traceback ("ValueError: mitdb: no beats were read") with the reasons above it
        raise DataError(f"none of the {len(skipped)} record(s) could be read (--on-bad-record skip skipped them "
                        f"all): " + "; ".join(f"{s['record']}: {s['problem']}" for s in skipped[:5])
                        + ("; ..." if len(skipped) > 5 else ""))
    return out


def record_problems(path: Path, wanted: Iterable[str], missing: Callable[[str], list[str]],
                    annotation: str | None = None, *, read_header: bool = True, dat_bytes: int | None = None,
                    file_of: Callable[[str], str] = str) -> dict[str, str]:
    """Record -> what is wrong with it, for each of ``wanted`` that lacks a file (``missing(file_of(record))``) or
    has a damaged one (:func:`damaged_record_files`: empty, a header wfdb cannot read or, with ``read_header``,
    a signal file shorter than its header says; without it, see ``dat_bytes`` there), as the end of a sentence:
    "has no 101.dat", "is damaged (...)"."""
    from ._paths import damaged_record_files

    out: dict[str, str] = {}
    for rec in wanted:
        if files := missing(file_of(rec)):
            out[rec] = f"has no {', '.join(files)}"
        elif damage := damaged_record_files(path, file_of(rec), annotation, read_header=read_header,
                                             dat_bytes=dat_bytes):
            out[rec] = f"is damaged ({damage})"
    return out


def describe_gaps(problems: dict[str, str], limit: int = 12) -> str:
    """``101 has no 101.dat; 103 is damaged (103.atr: empty annotation file (0 bytes))`` (the first ``limit`` records of
    :func:`record_problems`, then how many more)."""
    listed = list(problems.items())
    shown = "; ".join(f"{r} {problem}" for r, problem in listed[:limit])
    return shown + (f"; and {len(listed) - limit} more" if len(listed) > limit else "")


def refuse_incomplete(path: Path, database: str, title: str, wanted: list[str], bad: list[str], what: str,
                      copy: str, good: str) -> None:
    """RecordError: ``bad`` of the ``wanted`` records of ``title`` (e.g. "MIT-BIH") ``what``, with the ways on:
    ``copy``, --records with the ``good`` ones or --on-bad-record skip, and ``ecg-automl data fetch`` when
    ``path`` is where it puts ``database`` (it completes a copy, skipping the files already there)."""
    rest = [r for r in wanted if r not in bad]
    ways = [copy]
    if rest:
        ways.append(f"pass --records with {good} ({','.join(rest[:6])}{',...' if len(rest) > 6 else ''})"
                    " or --on-bad-record skip")
    if path.name == database:
        ways.append(f"complete the download with `ecg-automl data fetch {database} --root {path.parent}`")
    raise RecordError(str(path), f"{len(bad)} of the {len(wanted)} {title} records asked for {what}. To go on: "
                                 + "; ".join(ways))
