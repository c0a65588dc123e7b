"""On-disk cache of preprocessed arrays, keyed by every setting and input file that changes them."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ._paths import cache_dir
from .dataset import BeatDataset

log = logging.getLogger("ecg_data")

#: Bump when preprocessing changes, so old caches are not reused (and studies made before are refused). A change
#: to one source alone goes in that reader's cache inputs and ``data_layout`` instead (``loader.SOURCES``), so the
#: studies of the other sources still resume.
PIPELINE_VERSION = 6


#: The built-in sources' file kinds: headers, signal files (PTB's headers name a ``.xyz`` beside each ``.dat``: a
#: missing one was refused on a cold cache and passed on a warm one), annotations, CinC's ``.mat``, tables and CSVs.
_DATA_SUFFIXES = frozenset({".hea", ".dat", ".xyz", ".atr", ".mat", ".csv"})


def _fingerprint(path: Path, *, every: bool = False) -> list:
    """Names, sizes and mtimes (in ns: a copy made within the same second as the file it replaced kept its key) of
    the database's files, or of ``path`` alone when it is a file (a heartbeat CSV: its folder, perhaps ~, was
    walked on every load): a changed or repaired record misses the cache, and so does an edited ``RECORDS`` list
    (PTB reads its records, and so its test patients, from it). ``every``: all files, whatever their names (a
    source registered by a user reads files of its own kinds)."""
    if path.is_file():
        st = path.stat()
        return [[path.name, st.st_size, st.st_mtime_ns]]
    out = []
    for p in _files_under(path):
        if every or p.suffix.lower() in _DATA_SUFFIXES or p.name == "RECORDS":
            st = p.stat()
            out.append([str(p.relative_to(path)), st.st_size, st.st_mtime_ns])
    return sorted(out)


def _files_under(path: Path) -> list[Path]:
    """The files under ``path``, through symlinked folders too (``Path.rglob`` does not follow them, so a
    ``records100`` linked into a shared copy was left out of the key and a changed record served stale arrays);
    a folder reached twice (a link loop) is walked once."""
    seen: set[str] = set()
    files = []
    for folder, dirs, names in os.walk(path, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        files.extend(Path(folder) / n for n in names if os.path.isfile(os.path.join(folder, n)))
    return files


def source_digest(folder: Path) -> str:
    """Digest of the ``*.py`` files of ``folder`` (names and contents)."""
    h = hashlib.sha256()
    for p in sorted(Path(folder).glob("*.py")):
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=1)
def code_digest() -> dict[str, str]:
    """What computes the arrays besides the settings: this package's source and the versions of wfdb (reading,
    QRS detection), SciPy (filtering, resampling) and scikit-learn. In the cache key, so
    an upgrade that changes them prepares the arrays again even where :data:`PIPELINE_VERSION` was not bumped,
    instead of serving stale ones."""
    from importlib import metadata

    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:  # scikit-learn comes with the search extra, not with `pi`
            return "not installed"

    return {"ecg_data": source_digest(Path(__file__).parent), "wfdb": version("wfdb"), "scipy": version("scipy"),
            "scikit-learn": version("scikit-learn")}


def reader_inputs(reader: Callable[..., Any], path: Path) -> dict[str, Any] | None:
    """For a reader from outside this package (``register_source``): a digest of what it computes
    (:func:`_describe`: its name, source and the values it closes over) and every file under ``path``, for the
    cache key, which otherwise covers only this package's code and the PhysioNet file kinds (a changed reader, or a
    changed file of its own kind, was served the old arrays); None for ours. Whatever else it depends on, its
    ``cache_inputs(path)`` adds, as ours do."""
    if (getattr(reader, "__module__", "") or "").split(".")[0] == __name__.split(".")[0]:
        return None
    return {"reader": hashlib.sha256(_describe(reader).encode()).hexdigest()[:16],
            "files": _fingerprint(path, every=True)}


def _describe(obj: Any, depth: int = 0) -> str:
    """Text that stands for what ``obj`` (a reader, a partial of one, what a closure holds) computes, the same in
    every process and from one load to the next: a function by its name, source and closure, a partial by its
    function and arguments, an immutable value by its repr() (unless that holds a memory address: the key then
    missed the cache on every load), any other object by its type."""
    import functools
    import inspect

    if depth > 4:
        return type(obj).__qualname__
    if isinstance(obj, functools.partial):
        parts = [_describe(obj.func, depth + 1), *(_describe(a, depth + 1) for a in obj.args),
                 *(f"{k}={_describe(v, depth + 1)}" for k, v in sorted(obj.keywords.items()))]
        return "partial(" + "\0".join(parts) + ")"
    fn = getattr(obj, "__func__", obj)  # a bound method's function
    if inspect.isfunction(fn):
        try:
            code = inspect.getsource(fn)
        except (OSError, TypeError):  # defined where no source can be read (an interactive session)
            code = fn.__code__.co_code.hex() + repr(fn.__code__.co_names)
        cells = []
        for cell in fn.__closure__ or ():
            try:
                cells.append(_describe(cell.cell_contents, depth + 1))
            except ValueError:  # a cell not filled yet
                cells.append("")
        defaults = [_describe(d, depth + 1) for d in fn.__defaults__ or ()]
        return "\0".join([f"{fn.__module__}.{fn.__qualname__}", code, *cells, *defaults])
    if isinstance(obj, (str, int, float, bool, type(None), tuple, frozenset)):  # values that cannot change
        text = repr(obj)
        return type(obj).__qualname__ if " at 0x" in text else text
    # anything else by its type: a list it appends to, a logger or a counter changed the key on every load
    return type(obj).__qualname__


def cache_key(name: str, path: Path, settings: dict[str, Any]) -> str:
    """Hex digest over source, pipeline version, settings, file fingerprints and :func:`code_digest`."""
    blob = json.dumps({"name": name, "v": PIPELINE_VERSION, "settings": settings, "code": code_digest(),
                       "files": _fingerprint(path)}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def cached(name: str, path: Path, settings: dict[str, Any], build: Callable[[], BeatDataset],
           *, use_cache: bool = True, directory: Path | None = None) -> BeatDataset:
    """Return the cached dataset for these settings, or build it and write it atomically.

    A cache entry that cannot be read back whole (truncated, corrupt, half-deleted) is removed and rebuilt; a
    cache folder that cannot be written is reported as a warning and the arrays are used uncached."""
    directory = Path(directory) if directory is not None else cache_dir()
    key = cache_key(name, path, settings)
    npz = directory / f"{name}-{key}.npz"
    meta = npz.with_suffix(".json")
    if use_cache and npz.exists() and meta.exists():
        ds = _load_entry(npz, meta)
        if ds is not None:
            log.info("using cached %s arrays %s", name, npz)
            ds.info["cache"] = {"hit": True, "file": str(npz)}
            return ds
    ds = build()
    written = use_cache and _write_entry(ds, npz, meta, settings)
    ds.info["cache"] = {"hit": False, "file": str(npz) if written else None}
    return ds


def _load_entry(npz: Path, meta: Path) -> BeatDataset | None:
    """The dataset of a cache entry, or None (after a warning, the entry removed) when it is unreadable."""
    try:
        info = json.loads(meta.read_text())
        if not isinstance(info, dict):
            raise ValueError(f"{meta.name} holds no JSON object")
        stored = dict(info)
        info.pop(_MADE_BY, None)  # the cache's own record, not the dataset's
        ds = BeatDataset.load(npz, info)
        n = len(ds.y)
        if any(len(a) != n for a in (ds.X, ds.rr, ds.label, ds.groups, ds.records, ds.split)):
            raise ValueError("its arrays disagree in length")
    except Exception as exc:  # zipfile.BadZipFile, a bad CRC, EOFError, JSONDecodeError, a missing array...
        log.warning("cache entry %s is unreadable (%s: %s): rebuilding it", npz, type(exc).__name__, exc)
        _remove(npz, meta)
        return None
    _mark_used(npz, meta, stored)
    return ds


def _write_entry(ds: BeatDataset, npz: Path, meta: Path, settings: dict[str, Any]) -> bool:
    """Write a cache entry atomically (arrays first, then the .json that makes it valid); False, after a
    warning and with no temporary file left, when the cache folder cannot be written."""
    writer = f"{os.getpid()}-{threading.get_ident()}"  # two threads of one process filling one entry collided
    tmp = npz.with_name(f".{npz.name}.{writer}.tmp.npz")
    meta_tmp = meta.with_name(f".{meta.name}.{writer}.tmp")
    try:
        npz.parent.mkdir(parents=True, exist_ok=True)
        _remove(*_killed_writes(npz, meta))
        ds.save(tmp)
        meta_tmp.write_text(json.dumps({**ds.info, "settings": settings, _MADE_BY: _made_by()}, default=str))
        os.replace(tmp, npz)
        os.replace(meta_tmp, meta)
    except BaseException as exc:  # also Ctrl-C/SIGTERM mid-write: no orphaned temporary file (it may be 100+ MB)
        _remove(tmp, meta_tmp)
        if not isinstance(exc, OSError):
            raise
        log.warning("could not write the array cache in %s (%s: %s); continuing without it. Set "
                    "ECG_AUTOML_CACHE to a writable folder to cache the arrays", npz.parent,
                    type(exc).__name__, exc.strerror or exc)
        return False
    return True


#: Key of a cache entry's ``.json`` recording which code made it (:func:`code_digest`, :data:`PIPELINE_VERSION`): an
#: entry another version made is never read by this one (its key differs), and ``ecg-automl data cache`` says so.
_MADE_BY = "cache_made_by"


_ENTRY = re.compile(r"[^.].*-[0-9a-f]{20}\.npz")


def _made_by() -> dict[str, Any]:
    return {"pipeline_version": PIPELINE_VERSION, "code": code_digest()}


def _mark_used(npz: Path, meta: Path, info: dict[str, Any]) -> None:
    """Note a cache hit: the arrays' mtime is the entry's last use, and an entry an earlier version wrote without
    :data:`_MADE_BY` gets it in its ``.json`` (``info``, as read: this code just read the entry, so it is this
    code's). Nothing where the cache is read-only."""
    try:
        os.utime(npz)
        if _MADE_BY not in info:
            tmp = meta.with_name(f".{meta.name}.{os.getpid()}-{threading.get_ident()}.tmp")
            try:
                tmp.write_text(json.dumps({**info, _MADE_BY: _made_by()}, default=str))
                os.replace(tmp, meta)
            finally:
                _remove(tmp)
    except OSError:
        pass


@dataclass(frozen=True)
class CacheEntry:
    """One cached dataset: its arrays (``path``) and ``.json``, their size, its last use, and whether this
    installation's code made it (``current``: False for another version's, None where the entry does not say:
    written before entries recorded it, and not read since). A current entry may still never be read again: one of
    a data folder since moved, or of records since changed (their sizes and dates are in the key too)."""

    path: Path
    dataset: str
    size_bytes: int
    last_used: float
    current: bool | None

    @property
    def files(self) -> list[Path]:
        """The entry's arrays and its ``.json``, which makes them valid."""
        return [self.path, self.path.with_suffix(".json")]


def cache_entries(directory: str | os.PathLike | None = None) -> list[CacheEntry]:
    """The entries of the array cache (``$ECG_AUTOML_CACHE`` or ``~/.cache/ecg-automl/arrays``), least recently
    used first. Nothing removes an entry by itself: each upgrade of this package or of wfdb, SciPy or scikit-learn
    (and each moved data folder) starts new ones, 116 MB for all of MIT-BIH."""
    directory = Path(directory) if directory is not None else cache_dir()
    mine = _made_by()
    out = []
    for npz in directory.glob("*.npz") if directory.is_dir() else []:
        meta = npz.with_suffix(".json")
        # NAME-KEY.npz only (KEY: cache_key's 20 hex digits): a user's own mydata.npz in the folder is not an entry
        if not _ENTRY.fullmatch(npz.name) or not meta.is_file():
            continue
        try:
            info = json.loads(meta.read_text())
            made = info.get(_MADE_BY) if isinstance(info, dict) else None
            st = npz.stat()
        except (OSError, ValueError):
            continue  # removed meanwhile, or unreadable: the next load of it rebuilds it
        out.append(CacheEntry(npz, npz.stem.rsplit("-", 1)[0], st.st_size + meta.stat().st_size, st.st_mtime,
                              None if not isinstance(made, dict) else made == mine))
    return sorted(out, key=lambda e: e.last_used)


def stray_cache_files(directory: str | os.PathLike | None = None) -> list[Path]:
    """Temporary files that writers killed with SIGKILL left in the cache (hidden copies of arrays)."""
    directory = Path(directory) if directory is not None else cache_dir()
    if not directory.is_dir():
        return []
    # ".mitdb-KEY.npz.PID-TID.tmp.npz" and ".mitdb-KEY.json.PID-TID.tmp" are entry mitdb-KEY's
    stems = {q.name[1:].split(".npz.")[0].split(".json.")[0] for q in directory.glob(".*.tmp*")}
    return [p for stem in sorted(stems) for p in _killed_writes(directory / f"{stem}.npz", directory / f"{stem}.json")]


def remove_cache_entries(entries: list[CacheEntry], stray: list[Path] | None = None) -> int:
    """Delete these entries (a later load rebuilds one it needs) and the ``stray`` files of
    :func:`stray_cache_files`; the bytes freed."""
    freed = 0
    for f in [*(f for entry in entries for f in entry.files), *(stray or [])]:
        try:
            size = f.stat().st_size
            f.unlink()
            freed += size
        except FileNotFoundError:
            pass
    return freed


def _killed_writes(npz: Path, meta: Path) -> list[Path]:
    """Temporary files of this entry that a writer killed with SIGKILL left (its clean-up never ran): named by the
    writer's pid, which no longer runs. Each was a hidden copy of the arrays (6 MB for 8 MIT-BIH records, 100+ MB
    for all), never removed."""
    left = []
    for path in [*npz.parent.glob(f".{npz.name}.*.tmp.npz"), *meta.parent.glob(f".{meta.name}.*.tmp")]:
        pid = path.name.rsplit(".tmp", 1)[0].rsplit(".", 1)[-1].split("-")[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _running(int(pid)):
            left.append(path)
    return left


def _running(pid: int) -> bool:
    """Whether process ``pid`` of this host runs (one of another user's counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _remove(*paths: Path) -> None:
    """Delete these files where they exist and the folder allows it (a read-only cache keeps them)."""
    for p in paths:
        try:
            p.unlink(missing_ok=True)
        except OSError:
            pass
