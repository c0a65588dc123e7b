"""Where databases live: ``$ECG_AUTOML_DATA`` or a per-user cache directory, PhysioNet's WFDB layout."""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import DatabaseNotFoundError

log = logging.getLogger("ecg_data")

#: PhysioNet database slug (for ``wfdb.dl_database``) and a file whose presence means "already here".
PHYSIONET = {
    "mitdb": ("mitdb", "RECORDS"),
    "ptbdb": ("ptbdb", "RECORDS"),
    "ptbxl": ("ptb-xl", "ptbxl_database.csv"),
}

#: Extension of the beat-annotation file every record of a database has (the labels come from it); fetch and the
#: loader check that it is there. Databases not named have none that loading needs.
BEAT_ANNOTATIONS = {"mitdb": "atr"}


#: Seconds a download may wait for PhysioNet to connect or to send the next bytes before it fails.
DOWNLOAD_TIMEOUT = 60.0


def data_root() -> Path:
    """The data root: ``$ECG_AUTOML_DATA`` if set, else ``$XDG_CACHE_HOME/ecg-automl/data`` (``~/.cache``)."""
    env = os.environ.get("ECG_AUTOML_DATA")
    if env:
        return Path(env).expanduser().resolve()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ecg-automl" / "data"


def cache_dir() -> Path:
    """Where preprocessed arrays are cached: ``$ECG_AUTOML_CACHE`` or ``~/.cache/ecg-automl/arrays``.

    Kept apart from the data root, which may be read-only (a shared copy of PhysioNet).
    """
    env = os.environ.get("ECG_AUTOML_CACHE")
    if env:
        return Path(env).expanduser().resolve()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ecg-automl" / "arrays"


def database_dir(name: str, root: str | os.PathLike | None = None, *, download: bool = True) -> Path:
    """Directory of database ``name`` under the root; downloads it from PhysioNet when missing (unless
    ``download=False``: then a missing database is a :class:`DatabaseNotFoundError` and nothing is written)."""
    explicit_root = root is not None
    root = Path(root).expanduser().resolve() if root is not None else data_root()
    if root.is_file():  # was "database 'ptbxl' is not under <the file>"
        given = "--root" if explicit_root else "ECG_AUTOML_DATA"
        raise DatabaseNotFoundError(f"the data root {root} ({given}) is a file; it must be the folder that holds "
                                    f"{name}/ (or give the database's own folder or file with --data-path: search, "
                                    f"data info)")
    if not explicit_root and os.environ.get("ECG_AUTOML_DATA") and not root.exists():
        # a mistyped ECG_AUTOML_DATA started a download into a new folder tree of that name
        raise DatabaseNotFoundError(f"ECG_AUTOML_DATA={os.environ['ECG_AUTOML_DATA']} does not exist ({root}): fix "
                                    f"the path, or create the folder (mkdir -p {root}) to download {name} into it")
    path = root / name
    if name not in PHYSIONET:
        if path.is_dir():
            return path
        raise DatabaseNotFoundError(
            f"{path} does not exist, and {name} is not a PhysioNet database that can be downloaded: put its files "
            f"there, or point at them with --data-path (load_dataset(..., path=...))")
    slug, marker = PHYSIONET[name]
    if (path / marker).exists():
        return path
    _refuse_database_as_root(name, root)
    if not download:
        fetch = f"ecg-automl data fetch {name}" + (f" --root {root}" if explicit_root else "")
        raise DatabaseNotFoundError(
            f"database {name!r} is not under {root} (looked for {path / marker}). "
            f"Run `{fetch}` or set ECG_AUTOML_DATA to a folder holding {name}/.")
    return fetch_database(name, root)


def _refuse_database_as_root(name: str, root: Path) -> None:
    """DatabaseNotFoundError when ``root`` is the database's own folder (``--root data/mitdb``): a download would
    go into data/mitdb/mitdb, and the error said to run exactly that."""
    marker = PHYSIONET[name][1]
    if root.name == name and (root / marker).exists() and not (root / name / marker).exists():
        raise DatabaseNotFoundError(
            f"{root} is the {name} folder itself; the data root is the folder that holds {name}/: give "
            f"{root.parent} (ECG_AUTOML_DATA={root.parent}, or `ecg-automl data`'s --root {root.parent}), or the "
            f"database's own folder with --data-path {root} (search, data info)")


def fetch_database(name: str, root: str | os.PathLike | None = None) -> Path:
    """Download database ``name`` from PhysioNet into ``<root>/<name>/`` with ``wfdb.dl_database``; a database
    already there (its marker file, written last, present, and every record its RECORDS, or PTB-XL's
    ptbxl_database.csv, lists has its header, the signal files the header names and its beat annotations, none of
    them empty or shorter than the header says; PTB-XL: a header is read only when its signal file has an odd
    size) is left as it is, with no network access; one with
    files missing or cut short (a hand copy, deleted files, an interrupted copy) is completed (wfdb downloads a
    missing file and appends the rest of a shorter one; PTB-XL: only the records its table lists, so a subset whose
    table lists only its own records stays one), and files still missing or damaged after that are an error."""
    if name not in PHYSIONET:
        raise DatabaseNotFoundError(f"unknown PhysioNet database {name!r}; known: {', '.join(PHYSIONET)}")
    root = Path(root).expanduser().resolve() if root is not None else data_root()
    _refuse_database_as_root(name, root)
    slug, marker = PHYSIONET[name]
    path = root / name
    incomplete: dict[str, str] = {}
    if (path / marker).exists():  # the marker comes last: see _download
        incomplete = _incomplete_records(name, path, marker)
        if not incomplete:
            return path
        log.warning("%s in %s is incomplete (%s): downloading the missing files and the rest of any cut short "
                    "from PhysioNet", name, path,
                    _describe(incomplete))
    else:  # said before it starts: a search on a database the root lacks downloads it into that root
        log.warning("%s is not in the data root %s: downloading it from PhysioNet into %s (Ctrl-C stops; the same "
                    "command resumes)", name, root, path)
    created = [d for d in (path, *path.parents) if not d.exists()]  # folders this fetch makes (deepest first)
    before = _files_under(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # the root is a file, read-only, on a full disk...
        raise DatabaseNotFoundError(
            f"cannot download {name!r}: the folder {path} cannot be created ({exc.strerror or exc}). The data root "
            f"{root} must be a writable folder: set ECG_AUTOML_DATA (`ecg-automl data fetch`: or --root) to one, or "
            f"to a folder that already holds {name}/") from None
    try:
        with _network_timeout(DOWNLOAD_TIMEOUT):
            _download(name, slug, marker, path, list(incomplete))
    except BaseException as exc:  # network errors come in many types (requests, urllib3, OSError); or Ctrl-C
        kept = _remove_empty_new(path, before, created)
        if not isinstance(exc, Exception):
            raise
        raise DatabaseNotFoundError(
            f"could not download {name!r} from PhysioNet into {path}: {exc}. "
            + (f"The {kept} files downloaded so far are kept: the same command resumes the download. " if kept else "")
            + (f"Without network access, copy the missing files there yourself ({_describe(incomplete)})"
               if incomplete else f"Without network access, copy the PhysioNet files of {slug} there yourself "
               f"(the folder must contain {marker})")
            + f", or set ECG_AUTOML_DATA to a folder that holds {name}/.") from exc
    left = _incomplete_records(name, path, marker)
    if left:  # e.g. a RECORDS edited by hand that lists a record PhysioNet does not have, or a garbled header
        damaged = any(not problem.startswith("no ") for problem in left.values())
        raise DatabaseNotFoundError(
            f"downloaded {name!r} from PhysioNet into {path}, but {len(left)} record(s) its {marker} lists are still "
            f"incomplete: {_describe(left)}. "
            + ("wfdb completes a shorter file but never replaces one: remove the damaged files and run the same "
               "command again, which downloads them whole. Or " if damaged else "")
            + f"{'c' if damaged else 'C'}opy those files there by hand, or remove the records from {marker}.")
    return path


def missing_record_files(path: Path, record: str, annotation: str | None = None) -> list[str]:
    """The files of WFDB record ``record`` (a RECORDS entry, e.g. ``100`` or ``patient001/s0010_re``) missing under
    ``path``, relative to it: its header, the signal files the header names (read with wfdb, not guessed) and its
    ``annotation`` file, all of which loading it needs. A header wfdb cannot read names no file: reading the record
    reports it."""
    import wfdb

    hea = path / f"{record}.hea"
    if not hea.is_file():
        return [f"{record}.hea"]
    folder = Path(record).parent
    wanted: list[str] = []
    try:
        header = wfdb.rdheader(str(path / record))
    except Exception:  # malformed or empty: read_record says what is wrong with it
        header = None
    if header is not None:
        wanted += [(folder / f).as_posix() for f in dict.fromkeys(getattr(header, "file_name", None) or [])]
    if annotation:
        wanted.append(f"{record}.{annotation}")
    return [f for f in wanted if not (path / f).is_file()]


#: PTB-XL's tables, which are not WFDB records: the record list (the marker) and the scp-code statements.
PTBXL_TABLES = ("ptbxl_database.csv", "scp_statements.csv")

#: Bytes of every PTB-XL 100 Hz signal file (10 s x 100 Hz x 12 leads x 2 bytes, format 16). Only a file of another
#: size has its header read to check it (:func:`damaged_record_files`), so that 21,799 headers need not be.
PTBXL_LR_DAT_BYTES = 24_000


def damaged_record_files(path: Path, record: str, annotation: str | None = None, *, read_header: bool = True,
                         dat_bytes: int | None = None) -> str:
    """What is wrong with the files of record ``record``, all present under ``path`` (empty string: nothing): an
    empty file, a header wfdb cannot read, a signal file shorter than its header says (``read_header``; without
    it only empty files are looked for, and the header is read only when ``<record>.dat`` is not ``dat_bytes``
    long, the size every signal file of the database has). These are what an interrupted copy or download leaves."""
    from ._wfdb_io import annotation_file_problem, read_header as check
    from .errors import RecordError

    files = {f"{record}.hea": "header", **({f"{record}.{annotation}": "annotation"} if annotation else {})}
    for name, kind in files.items():
        if (path / name).stat().st_size == 0:
            return f"{name}: empty {kind} file (0 bytes)"
    if annotation and (problem := annotation_file_problem(path / f"{record}.{annotation}")):
        return f"{record}.{annotation}: {problem}"
    dat = path / f"{record}.dat"
    if not read_header and dat_bytes is not None and dat.is_file() and dat.stat().st_size != dat_bytes:
        read_header = True  # an odd size: cut short, or a record unlike the others; its header says which
    if read_header:
        try:
            check(path / record)  # the header parsed and checked, each signal file's size against it
        except RecordError as exc:
            where = Path(exc.path)
            return f"{where.relative_to(path).as_posix() if where.is_relative_to(path) else where.name}: {exc.problem}"
    elif (path / f"{record}.dat").is_file() and (path / f"{record}.dat").stat().st_size == 0:
        return f"{record}.dat: empty signal file (0 bytes)"
    return ""


def missing_ptbxl_files(path: Path, record: str) -> list[str]:
    """The files of PTB-XL record ``record`` (a ``filename_lr`` of its table) missing under ``path``, as
    :func:`missing_record_files` finds them; the header is read only when ``<record>.dat`` is absent (every PTB-XL
    header names that one file, and reading 21,799 headers with wfdb takes minutes)."""
    if (path / f"{record}.hea").is_file() and (path / f"{record}.dat").is_file():
        return []
    return missing_record_files(path, record)


def ptbxl_records(csv: Path) -> list[str]:
    """The ``filename_lr`` entries of PTB-XL's table ``csv`` (the 100 Hz records the loader reads); a row without
    one is left to the loader to report."""
    import pandas as pd

    try:
        column = pd.read_csv(csv, usecols=["filename_lr"])["filename_lr"]
    except Exception as exc:  # unreadable, or no filename_lr column
        raise DatabaseNotFoundError(
            f"{csv}: cannot tell which records it lists ({type(exc).__name__}: {exc}). Remove it and run "
            f"`ecg-automl data fetch ptbxl` again to download the tables") from None
    return [f.strip() for f in column if isinstance(f, str) and f.strip()]


def _incomplete_records(name: str, path: Path, marker: str) -> dict[str, str]:
    """Record -> what is wrong with it, for each record a RECORDS marker (or PTB-XL's table) lists that lacks a
    file (:func:`missing_record_files`) or has a damaged one (:func:`damaged_record_files`: for PTB-XL, whose
    21,799 headers take minutes to read, empty files, and a header read only for a signal file of an odd size);
    empty for a database with neither. PTB-XL's statement table, when missing, is there too (``scp_statements.csv``
    -> ``no scp_statements.csv``): the loader needs it."""
    annotation = BEAT_ANNOTATIONS.get(name)
    if marker == "RECORDS":
        records = (path / marker).read_text(encoding="utf-8", errors="replace").split()
        missing, read_header = (lambda r: missing_record_files(path, r, annotation)), True
    elif name == "ptbxl":
        records = ptbxl_records(path / marker)
        missing, read_header = (lambda r: missing_ptbxl_files(path, r)), False
    else:
        return {}
    dat_bytes = PTBXL_LR_DAT_BYTES if name == "ptbxl" else None
    out: dict[str, str] = {}
    if name == "ptbxl":  # the loader needs the statement table too (a mirror without it was reported complete)
        out.update({t: f"no {t}" for t in PTBXL_TABLES if t != marker and not (path / t).is_file()})
    for r in records:
        if files := missing(r):
            out[r] = f"no {', '.join(files)}"
        elif damage := damaged_record_files(path, r, annotation, read_header=read_header, dat_bytes=dat_bytes):
            out[r] = damage
    return out


def _describe(incomplete: dict[str, str], limit: int = 8) -> str:
    """``101: no 101.dat; 103: 103.atr: empty annotation file (0 bytes)`` (the first ``limit`` records, then how
    many more)."""
    shown = "; ".join(f"{r}: {problem}" for r, problem in list(incomplete.items())[:limit])
    more = len(incomplete) - limit
    return shown + (f"; and {more} more record(s)" if more > 0 else "")


def _download(name: str, slug: str, marker: str, path: Path, incomplete: list[str] | None = None) -> None:
    """The wfdb calls that fetch database ``name`` (PhysioNet's ``slug``) into ``path``; for PTB-XL, the
    ``incomplete`` records of a copy whose table is there (the table is kept: it may list a subset)."""
    import wfdb

    if name == "ptbxl" and incomplete:
        tables = [r for r in incomplete if r in PTBXL_TABLES]  # the statement table, missing from a hand copy
        if tables:
            wfdb.dl_files(slug, str(path), tables)
        if records := [r for r in incomplete if r not in PTBXL_TABLES]:
            wfdb.dl_database(slug, str(path), records=records, annotators=None)  # skips the files already there
    elif name == "ptbxl":
        # PTB-XL's CSV files are not WFDB records: fetch the 100 Hz records plus the two tables. The tables come
        # first (the record list is in one) into a side folder, and move beside the records only once every record
        # is here: ptbxl_database.csv is the marker, and an interrupted download must not look finished.
        import pandas as pd

        tables = path / ".tables-downloading"
        names = list(PTBXL_TABLES)
        wfdb.dl_files(slug, str(tables), names)
        table = pd.read_csv(tables / "ptbxl_database.csv")
        wfdb.dl_database(slug, str(path), records=list(table["filename_lr"]), annotators=None)
        for table_name in sorted(names, key=lambda n: n == marker):  # the marker last
            os.replace(tables / table_name, path / table_name)
        tables.rmdir()
    else:
        wfdb.dl_database(slug, str(path))
        if not (path / marker).exists():
            wfdb.dl_files(slug, str(path), [marker])


@contextmanager
def _network_timeout(seconds: float) -> Iterator[None]:
    """Give wfdb's HTTP requests a timeout: it sends them with none, so a server, proxy or firewall that
    accepts the connection and then goes silent hung the download forever instead of failing it."""
    try:
        from wfdb.io import _url

        session = _url._get_session()
    except (ImportError, AttributeError):  # another wfdb layout: download as it does
        yield
        return
    send = session.request

    def request(method, url, **kwargs):
        kwargs.setdefault("timeout", seconds)
        return send(method, url, **kwargs)

    session.request = request
    try:
        yield
    finally:
        del session.request  # the class's method again


def _files_under(path: Path) -> set[Path]:
    """Every file and folder under ``path`` now (empty if it does not exist)."""
    return set(path.rglob("*")) if path.is_dir() else set()


def _remove_empty_new(path: Path, before: set[Path], created: list[Path]) -> int:
    """Undo what a failed fetch made that holds nothing: new folders left empty under ``path``, and the folders
    in ``created`` (deepest first, only while empty), so no empty database folder is mistaken for a download.
    Files it downloaded stay (wfdb resumes from them, skipping complete files); returns how many."""
    new = _files_under(path) - before
    for p in sorted((q for q in new if q.is_dir() and not q.is_symlink()), key=lambda q: len(q.parts), reverse=True):
        try:
            p.rmdir()
        except OSError:
            pass  # not empty: it holds downloaded files
    for d in created:
        try:
            d.rmdir()
        except OSError:
            break  # not empty: its parents are not empty either
    return sum(1 for q in new if q.is_file())
