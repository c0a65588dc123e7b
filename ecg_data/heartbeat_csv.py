"""Heartbeat CSV files (Kaggle "ECG Heartbeat Categorization" layout): one beat per row.

Each row holds 187 samples at 125 Hz and a last column with the class, no header (``mitbih_train.csv``,
``mitbih_test.csv`` with classes 0-4, ``ptbdb_normal.csv``/``ptbdb_abnormal.csv`` with 0/1). Class 0 is
normal (y=0), any other class abnormal; ``label`` keeps the class number; a class outside 0-4 is refused (a
header row ``0,1,...,187`` would otherwise be a beat of class 187), outside 0/1 in a file whose name begins with
``ptbdb`` (Kaggle's PTB files). A row begins at its R peak (Kachuee
et al. 2018 cut each beat from one R peak on for 1.2 RR intervals and zero-padded it): rows are resampled to
``fs`` and placed with their first sample at the window's centre, as every source's R peak is (see
:func:`windows_of`), then normalised per window. There are no RR intervals
(``rr`` is 1.0 everywhere, ``info['rr_available'] = False``).

The format has no patient ids, and without them every split leaks patients. A sidecar ``<file>.groups``
(one patient id per line, one line per row) supplies them. Without it the reader refuses, unless
``allow_beat_level_split=True`` (or ``ECG_AUTOML_ALLOW_BEAT_SPLIT=1`` in the environment, which is how
``load_dataset`` passes it): then every row is its own group, with a loud warning and
``info['beat_level_split'] = True``. Files whose name contains 'test' (:func:`is_test_file`) are the test part.
"""

from __future__ import annotations

import logging
import math
import os
import re
from pathlib import Path

import numpy as np

from ._records import ON_BAD_RECORD
from .dataset import BeatDataset, concat
from .errors import DataError
from .preprocess import N_RR_FEATURES, normalise, resample

log = logging.getLogger("ecg_data")

FS_IN = 125.0
N_SAMPLES = 187
N_COLUMNS = N_SAMPLES + 1
#: The layout's classes: 0-4 (N, S, V, F, Q) in the MIT-BIH files, 0/1 in the PTB ones.
MAX_CLASS = 4
#: A file whose name begins with this (any case) is one of the PTB files, classes 0/1 only (0 normal, 1 abnormal).
PTB_PREFIX = "ptbdb"
PTB_MAX_CLASS = 1
ENV_ALLOW = "ECG_AUTOML_ALLOW_BEAT_SPLIT"
GROUPS_SUFFIX = ".groups"
#: How rows become windows (in the cache key, and recorded by a study: :func:`data_layout`).
WINDOW_LAYOUT = 2
#: What each :data:`WINDOW_LAYOUT` did, for the message that refuses a study made with another one.
WINDOW_LAYOUTS = {1: "each row centre-cropped, its R peak cut off", 2: "each row's R peak at the window centre"}


def data_layout() -> int:
    """The current :data:`WINDOW_LAYOUT`: a study records it, so its trials are not resumed on windows of another."""
    return WINDOW_LAYOUT


def describe_layout(layout: int | None) -> str:
    """One layout in words, for a refused study (``None``: one made before studies recorded the layout)."""
    if layout is None:
        return f"no layout recorded (made before studies recorded one, most likely with layout 1: {WINDOW_LAYOUTS[1]})"
    return f"layout {layout} ({WINDOW_LAYOUTS[layout]})" if layout in WINDOW_LAYOUTS else f"layout {layout}"


def allow_beat_split_from_env() -> bool:
    """Whether :data:`ENV_ALLOW` asks for a beat-level split of a CSV without patient groups (leaky, opt-in)."""
    return os.environ.get(ENV_ALLOW, "").strip().lower() in ("1", "true", "yes", "on")


def csv_files(path: Path) -> list[Path]:
    """``path`` itself, or the ``*.csv`` files of the folder ``path`` (sorted)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.glob("*.csv") if p.is_file())
        if not files:
            raise DataError(f"heartbeat-csv: no .csv files in {path}")
        return files
    if not path.exists():
        raise DataError(f"heartbeat-csv: {path} does not exist")
    return [path]


def is_test_file(csv: Path) -> bool:
    """Whether ``csv`` holds held-out test beats: its name contains ``test``, in any case (mitbih_test.csv,
    TestData.csv; also train_latest.csv, which :func:`read_heartbeat_csv` warns about)."""
    return "test" in csv.name.lower()


def _naming_warnings(path: Path, files: list[Path]) -> list[str]:
    """What the naming rules did that may not be meant: a file read as a test file for 'test' inside another word,
    files ending in another case of .csv left out of a folder (both rules are older than these warnings, and
    studies made on such folders rely on them)."""
    out = [f"heartbeat-csv: {csv.name} is read as held-out test beats (its name contains 'test'); rename it if it "
           f"is not a test file" for csv in files if _test_inside_a_word(csv)]
    if Path(path).is_dir():
        other = sorted(p.name for p in Path(path).iterdir() if p.suffix.lower() == ".csv" and p.suffix != ".csv")
        if other:
            out.append(f"heartbeat-csv: {', '.join(other)} in {path} {'is' if len(other) == 1 else 'are'} not read "
                       f"(only files ending in .csv are): rename {'it' if len(other) == 1 else 'them'} to read "
                       f"{'it' if len(other) == 1 else 'them'}")
    return out


def _test_inside_a_word(csv: Path) -> bool:
    """Whether ``test`` appears in ``csv``'s name only inside a longer word (latest, contest, attestation): the file
    is a test file all the same (the rule is older than this check, and studies rely on it), but it may not be
    meant as one."""
    return is_test_file(csv) and re.search(r"(?:^|[^a-z])test", csv.stem.lower()) is None


def groups_file(csv: Path) -> Path:
    """The file of patient ids beside ``csv`` (one per row, same order)."""
    return csv.with_name(csv.name + GROUPS_SUFFIX)


def cache_inputs(path: Path) -> dict:
    """What besides the CSV files changes the result: the sidecars, the beat-level-split switch and
    :data:`WINDOW_LAYOUT` (so arrays cached with another placement of the rows are not reused).

    ``load_dataset`` adds this to the cache key (the generic fingerprint only covers .csv/.hea/... files).
    """
    sidecars = []
    for csv in csv_files(path):
        g = groups_file(csv)
        if g.exists():
            st = g.stat()
            sidecars.append([g.name, st.st_size, st.st_mtime_ns])
        st = csv.stat()
        sidecars.append([csv.name, st.st_size, st.st_mtime_ns])
    return {"files": sidecars, "allow_beat_level_split": allow_beat_split_from_env(), "layout": WINDOW_LAYOUT}


def csv_number(field: str) -> float:
    """A CSV cell as the number numpy's and pandas' readers take it; ValueError otherwise (Python's ``float()`` also
    reads ``1_0`` as 10, which they refuse)."""
    if "_" in field:
        raise ValueError(field)
    return float(field)


def _max_class(csv: Path) -> int:
    """The highest class ``csv`` may hold: 1 in a PTB file (told by its name, as Kaggle's ptbdb_*.csv), else 4."""
    return PTB_MAX_CLASS if csv.name.lower().startswith(PTB_PREFIX) else MAX_CLASS


def _locate_problem(csv: Path) -> None:
    """Scan ``csv`` line by line and raise a DataError naming the first malformed line."""
    rows = 0
    top = _max_class(csv)
    classes = (f"a PTB file's classes 0-{top} (its name begins with {PTB_PREFIX}; 0-{MAX_CLASS} are read from files "
               f"named otherwise)" if top == PTB_MAX_CLASS else f"the layout's classes 0-{top}")
    with open(csv, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, start=1):
            text = line.strip()
            if not text:
                continue
            fields = text.split(",")
            if len(fields) != N_COLUMNS:
                raise DataError(f"{csv}, line {lineno}: {len(fields)} columns, expected {N_COLUMNS} "
                                f"({N_SAMPLES} samples at {FS_IN:g} Hz and the class)")
            for col, field in enumerate(fields, start=1):
                try:
                    v = csv_number(field)
                except ValueError:
                    raise DataError(f"{csv}, line {lineno}, column {col}: {field.strip()[:40]!r} is not a number") from None
                if not math.isfinite(v):
                    raise DataError(f"{csv}, line {lineno}, column {col}: {field.strip()!r} is not a finite number")
            label = float(fields[-1])
            if label < 0 or not label.is_integer():
                raise DataError(f"{csv}, line {lineno}: class {fields[-1].strip()!r} is not a whole number >= 0")
            if label > top:
                header = lineno == 1 and [f.strip() for f in fields[:3]] == ["0", "1", "2"]  # pandas' column numbers
                hint = " (a header row? this layout has none)" if header else ""
                raise DataError(f"{csv}, line {lineno}: class {fields[-1].strip()!r} is not one of {classes}{hint}")
            rows += 1
    if rows == 0:
        raise DataError(f"{csv}: no rows")


def read_rows(csv: Path) -> np.ndarray:
    """The rows of one file as a float array (rows, 188); DataError naming file and line when malformed."""
    import pandas as pd

    try:
        # na_filter=False: an empty or short row fails to parse instead of turning into NaN
        arr = pd.read_csv(csv, header=None, dtype=np.float64, na_filter=False, engine="c").to_numpy()
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        arr = None
    if arr is not None and arr.ndim == 2 and arr.shape[0] > 0 and arr.shape[1] == N_COLUMNS \
            and np.isfinite(arr).all() and (arr[:, -1] >= 0).all() and (arr[:, -1] <= _max_class(csv)).all() \
            and (arr[:, -1] == np.round(arr[:, -1])).all():
        return arr
    _locate_problem(csv)
    raise DataError(f"{csv}: not a heartbeat CSV ({N_COLUMNS} numeric columns per row, no header)")


def read_groups(csv: Path, n_rows: int) -> np.ndarray | None:
    """Patient ids from ``<csv>.groups``, or None when there is no sidecar."""
    g = groups_file(csv)
    if not g.exists():
        return None
    try:
        data = g.read_bytes()
    except OSError as exc:  # a folder of that name, no read permission
        raise DataError(f"{g}: cannot be read as the patient ids of {csv.name} ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark (Notepad, Excel) made the first id another patient's
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataError(f"{g}, line {line}: not UTF-8 text (byte {data[exc.start]:#04x}); save the patient ids "
                        f"as UTF-8") from None
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    ids = [ln.strip() for ln in lines]
    for i, pid in enumerate(ids, start=1):
        if not pid:
            raise DataError(f"{g}, line {i}: empty patient id")
    if len(ids) != n_rows:
        raise DataError(f"{g}: {len(ids)} patient ids, but {csv.name} has {n_rows} rows (one id per row)")
    return np.array(ids)


def windows_of(samples: np.ndarray, fs: float, window: int, fs_in: float = FS_IN) -> np.ndarray:
    """Rows resampled from ``fs_in`` to ``fs`` as normalised windows (n, window, 1), R peak at the centre.

    A row of this layout begins at its R peak (the beat runs from one R peak for 1.2 RR intervals, then zeros), so
    its first sample goes to the window's centre sample ``window // 2``, where every other source has its R peak
    and where a model's ``input_length`` crop is centred; zeros come before it, and the row's end (its padding) is
    cut or zero-padded to fill the window. A centre crop of the row cut its R peak off."""
    res = resample(samples.T, fs_in, fs).T
    half = window // 2
    beat = res[:, :window - half]
    out = np.zeros((res.shape[0], window))
    out[:, half:half + beat.shape[1]] = beat
    return normalise(out[:, :, None])


def read_heartbeat_csv(path: Path, *, fs: float = 180.0, window: int = 256, records: list[str] | None = None,
                       on_bad_record: str = "error", allow_beat_level_split: bool | None = None) -> BeatDataset:
    """Beats of one heartbeat CSV or a folder of them (``records`` selects files by name or stem).

    Malformed files always raise (there is no record to skip: ``on_bad_record`` is accepted for the
    loader's interface).
    """
    if on_bad_record not in ON_BAD_RECORD:
        raise ValueError(f"on_bad_record must be one of {ON_BAD_RECORD}, not {on_bad_record!r}")
    if allow_beat_level_split is None:
        allow_beat_level_split = allow_beat_split_from_env()
    files = csv_files(path)
    if records is not None:
        want = {str(r) for r in records}
        chosen = [f for f in files if f.name in want or f.stem in want]
        if not chosen:
            raise DataError(f"heartbeat-csv: none of {sorted(want)} among the CSV files at {path}")
        unknown = sorted(want - {f.name for f in chosen} - {f.stem for f in chosen})
        if unknown:  # a misspelt name left its file out, and with it perhaps the whole test part, without a word
            raise DataError(f"heartbeat-csv: {unknown} {'is' if len(unknown) == 1 else 'are'} not among the CSV "
                            f"files at {path} ({', '.join(f.stem for f in files)})")
        files = chosen

    parts: list[BeatDataset] = []
    beat_level: list[str] = []
    for i, csv in enumerate(files):
        rows = read_rows(csv)
        n = len(rows)
        groups = read_groups(csv, n)
        if groups is None:
            if not allow_beat_level_split:
                raise DataError(
                    f"{csv}: no patient ids. This format has none, and without them any split puts beats of "
                    f"the same patient on both sides (a leaking, optimistic test score). Provide "
                    f"{groups_file(csv).name} next to it with one patient id per row, or accept a "
                    f"beat-level split with {ENV_ALLOW}=1 in the environment (in Python also "
                    f"read_heartbeat_csv(..., allow_beat_level_split=True), which is not cached).")
            groups = np.char.add(f"{i}:", np.arange(n).astype(str))
            beat_level.append(csv.name)
        classes = rows[:, -1].astype(np.int64)
        split = "test" if is_test_file(csv) else "search"
        parts.append(BeatDataset(
            "heartbeat-csv", windows_of(rows[:, :-1], fs, window), np.ones((n, N_RR_FEATURES), dtype=np.float32),
            (classes != 0).astype(np.int8), classes.astype(str), groups, np.full(n, csv.stem[:32]),
            np.full(n, split), fs))
    warnings = _naming_warnings(path, files)
    for message in warnings:
        log.warning("%s", message)
    if beat_level:
        warnings.append(f"heartbeat-csv: NO PATIENT IDS for {', '.join(beat_level)} - every beat is its own group, "
                        f"so the search/test split and cross-validation mix beats of the same patients: scores "
                        f"will be optimistic and do not measure generalisation to new patients")
        log.warning("%s", warnings[-1])
    ds = concat("heartbeat-csv", parts, fs, {
        "rr_available": False,
        "beat_level_split": bool(beat_level),
        "files": [f.name for f in files],
        "skipped": [],
        "warnings": warnings,
        "protocol": f"heartbeat CSV, {N_SAMPLES} samples at {FS_IN:g} Hz per row; class 0 normal; "
                    f"files named *test* are the test part",
    })
    # the opt-in covers the files without ids only: a patient the other files' ids put on both sides is still a leak
    ids = {part: {str(g) for p, csv in zip(parts, files) if csv.name not in beat_level and p.split[0] == part
                  for g in np.unique(p.groups)} for part in ("search", "test")}
    crossing = sorted(ids["search"] & ids["test"])
    if crossing:
        raise DataError(f"heartbeat-csv: patient(s) {', '.join(crossing[:10])} have beats in both the test "
                        f"file(s) and the others; the test split would leak patients")
    return ds


read_heartbeat_csv.cache_inputs = cache_inputs  # type: ignore[attr-defined]
read_heartbeat_csv.data_layout = data_layout  # type: ignore[attr-defined]
read_heartbeat_csv.describe_layout = describe_layout  # type: ignore[attr-defined]
