"""One entry point for every source: ``load_dataset(name, ...)`` -> :class:`BeatDataset`, cached."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ._paths import PHYSIONET, database_dir
from .cache import cached, reader_inputs
from .dataset import BeatDataset
from .errors import DataError

log = logging.getLogger("ecg_data")

#: name -> reader(path, *, fs, window, records, on_bad_record) -> BeatDataset. A reader may carry a
#: ``cache_inputs(path) -> JSON-able`` attribute: what else changes its result goes into the cache key; and a
#: ``data_layout() -> int`` (with ``describe_layout(int | None) -> str``): the version of its arrays' layout, for
#: a change that concerns this source alone (``PIPELINE_VERSION`` concerns every source). A study records it.
SOURCES: dict[str, Callable[..., BeatDataset]] = {}

#: Sampling rates (Hz) and window lengths (samples) beats are prepared at; a space file's ``data:`` takes the same
#: (``spaces.schema.DATA_KEYS``). fs=1 blamed a sound record's file, fs=5 band-passed to 0.5-2.25 Hz, and
#: window=100000 wrote a 507 MB cache file for one record.
FS_RANGE = (50.0, 1000.0)
WINDOW_RANGE = (16, 20_000)


def register_source(name: str, reader: Callable[..., BeatDataset]) -> None:
    """Make ``reader`` available as ``load_dataset(name)`` and on the CLI's ``--dataset``."""
    if not isinstance(name, str) or not name.strip():
        raise TypeError(f"a source's name must be a non-empty string, not {name!r}")
    if not callable(reader):  # found only when the source was loaded
        raise TypeError(f"reader must be a function reader(path, *, fs, window, records, on_bad_record) -> "
                        f"BeatDataset, not {reader!r}")
    SOURCES[name] = reader


def load_dataset(
    name: str,
    *,
    root: str | Path | None = None,
    fs: float = 180.0,
    window: int = 256,
    records: list[str] | None = None,
    on_bad_record: str = "error",
    use_cache: bool = True,
    download: bool = True,
    path: str | Path | None = None,
) -> BeatDataset:
    """Load database ``name`` as beat windows of ``window`` samples at ``fs`` Hz.

    ``path`` points at the data directly (the heartbeat-CSV source takes a file or folder); otherwise the
    database is ``<root>/<name>/`` (``$ECG_AUTOML_DATA`` or the user cache), downloaded when missing.
    """
    if name not in SOURCES:
        raise DataError(f"unknown dataset {name!r}; available: {', '.join(sorted(SOURCES))}")
    records = _record_names(records)
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)):
        raise TypeError(f"window must be a whole number of samples, not {window!r}")
    if isinstance(fs, bool) or not isinstance(fs, (int, float, np.integer, np.floating)):
        raise TypeError(f"fs must be a number (Hz), not {fs!r}")
    if not WINDOW_RANGE[0] <= window <= WINDOW_RANGE[1]:
        raise DataError(f"window must be from {WINDOW_RANGE[0]} to {WINDOW_RANGE[1]:,} samples, not {window}")
    if not FS_RANGE[0] <= fs <= FS_RANGE[1]:
        raise DataError(f"fs must be a sampling rate from {FS_RANGE[0]:g} to {FS_RANGE[1]:g} Hz, not {fs}")
    db_path = Path(path).expanduser().resolve() if path is not None else database_dir(name, root, download=download)
    if not db_path.exists():
        raise DataError(f"{db_path} does not exist")
    if path is not None:
        if db_path.is_file() and name in PHYSIONET:  # all records were "missing their header" below it
            raise DataError(f"{db_path} is a file; --data-path (path=) names the {name} folder that holds its "
                            f"records: {db_path.parent}?")
        _refuse_parent_folder(name, db_path)
    settings: dict[str, Any] = {"fs": float(fs), "window": int(window),
                                "records": sorted(records) if records else None,
                                "on_bad_record": on_bad_record, "path": str(db_path)}
    reader = SOURCES[name]
    cache_inputs = getattr(reader, "cache_inputs", None)
    if cache_inputs is not None:  # inputs beyond the fingerprinted files (sidecars, switches read from the env)
        settings["inputs"] = cache_inputs(db_path)
    own = reader_inputs(reader, db_path)
    if own is not None:  # a registered reader's code and files
        settings["reader"] = own
    ds = cached(name, db_path, settings,
                lambda: reader(db_path, fs=fs, window=window, records=records, on_bad_record=on_bad_record),
                use_cache=use_cache)
    if ds.info.get("cache", {}).get("hit"):  # the reader logged these when it built the arrays; repeat them
        for skip in ds.info.get("skipped", []):
            log.warning("skipped bad record %s: %s", skip["path"], skip["problem"])
        for message in ds.info.get("warnings", []):
            log.warning("%s", message)
    return ds


def _refuse_parent_folder(name: str, path: Path) -> None:
    """DataError when ``path`` (a ``--data-path``) holds no copy of PhysioNet database ``name`` but its subfolder
    ``name`` does: the data root given for the database's folder was reported as every record missing."""
    marker = PHYSIONET.get(name, (None, None))[1]
    if marker is None or not path.is_dir() or (path / marker).exists() or any(path.glob("*.hea")):
        return
    if (path / name / marker).exists():
        raise DataError(f"{path} holds no {name} records, but its subfolder {name}/ does: did you mean "
                        f"--data-path {path / name}?")


def data_layout(name: str) -> int | None:
    """The layout version of source ``name``'s arrays (its reader's ``data_layout()``), None for a source without
    one (or an unknown name): a study records it, so that it is not resumed on arrays laid out otherwise."""
    get = getattr(SOURCES.get(name), "data_layout", None)
    return None if get is None else int(get())


def describe_layout(name: str, layout: int | None) -> str:
    """Layout ``layout`` of source ``name`` in words, for a message (its reader's ``describe_layout``, if any)."""
    describe = getattr(SOURCES.get(name), "describe_layout", None)
    if describe is not None:
        return describe(layout)
    return "no layout recorded" if layout is None else f"layout {layout}"


def _record_names(records: object) -> list[str] | None:
    """``records`` as a list of names: a lone string would be read letter by letter, record 101 given as a
    number would not match ``"101"``, and an empty list would select the whole database from the cache."""
    if records is None:
        return None
    if isinstance(records, (str, bytes)):
        raise TypeError(f"records must be a list of record names, not one string: records=[{records!r}]")
    if not isinstance(records, Iterable):  # records=101: "'int' object is not iterable"
        raise TypeError(f"records must be a list of record names, not {records!r}: records=[{str(records)!r}]")
    records = [str(r) for r in records]
    if not records:
        raise DataError("records is empty: name at least one record, or pass None for every record")
    return records
