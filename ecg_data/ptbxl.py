"""PTB-XL: 12-lead 10 s records, NORM vs abnormal (MI/STTC/CD/HYP), the recommended strat_fold split.

Each record's label comes from its ``scp_codes`` statements that are diagnostic in ``scp_statements.csv``:
abnormal (y=1, label 'ABN') when any maps to MI, STTC, CD or HYP; normal (y=0, 'NORM') when NORM is the
only diagnostic superclass; records without a diagnostic statement are left out (counted in ``info``).
Beats are R peaks found by wfdb's XQRS on lead II of the 100 Hz record (upsampled for the detector);
windows hold all 12 leads, and every beat carries its record's label. strat_fold 1-9 is the search part, fold 10 the test part (the
split PTB-XL recommends; its folds are patient-disjoint, which is checked).

A copy may hold a subset of the records its table lists. Loading the whole table reads the records that are there
and says how many are not (neither their .hea nor their .dat present); a record with only some of its files, or
one asked for with ``records`` that is not there, is an error naming every such record and the ways on.
"""

from __future__ import annotations

import ast
import logging
from pathlib import Path
from typing import Any

import numpy as np

from ._paths import PTBXL_LR_DAT_BYTES, missing_ptbxl_files
from ._records import describe_gaps, read_all, record_problems, refuse_incomplete
from ._wfdb_io import detect_qrs, read_record
from .dataset import BeatDataset, concat
from .errors import DataError, RecordError
from .preprocess import beats_from_signal, fill_nans, resample, resampled_positions

log = logging.getLogger("ecg_data")

DATABASE_CSV = "ptbxl_database.csv"
STATEMENTS_CSV = "scp_statements.csv"
ABNORMAL_CLASSES = ("MI", "STTC", "CD", "HYP")
LEAD = "II"
TEST_FOLD = 10
#: R peaks are detected on lead II upsampled to this rate (see :func:`detect_r_peaks`).
DETECT_FS = 300.0
#: The rate of every record ``filename_lr`` names (``records100/``): another in a header means a damaged or edited one.
FS_LR = 100.0
#: Records with fewer detected beats than this are skipped (and counted).
MIN_BEATS = 3
_EXAMPLES = 20  # at most this many record ids per counter in ``info`` (keep the cached metadata small)


def _patient_id(value, ecg_id: int, csv: Path) -> str:
    """``15709.0`` -> ``'15709'``."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        f = float("nan")
    if not np.isfinite(f):
        raise DataError(f"{csv}: ecg_id {ecg_id} has no valid patient_id ({value!r})")
    return str(int(f)) if f.is_integer() else str(value)


def _cell(value) -> str:
    """A table cell for a message: an empty one as "empty", others as written ("3.5", not np.float64(3.5))."""
    import pandas as pd

    return "empty" if pd.isna(value) else repr(str(value))


def _ecg_ids(index, csv: Path):
    """The table's ecg_id column as whole numbers; DataError naming the first bad or repeated one (a
    repeated id made every later lookup return two rows, a text id hid every record)."""
    import pandas as pd

    ids = pd.to_numeric(pd.Series(index, dtype=object), errors="coerce")
    whole = ids.notna() & (ids == ids.round())
    if not whole.all():
        pos = int(np.flatnonzero(~whole.to_numpy())[0])
        raise DataError(f"{csv}: data row {pos + 1} has ecg_id {_cell(index[pos])} (expected a whole number)")
    ids = pd.Index(ids.astype(np.int64), name=index.name)
    repeated = ids[ids.duplicated()]
    if len(repeated):
        raise DataError(f"{csv}: ecg_id {repeated[0]} is in more than one row (each record once)")
    return ids


def _diagnostic_classes(path: Path) -> dict[str, str]:
    """scp code -> diagnostic superclass, for statements with ``diagnostic == 1``."""
    import pandas as pd

    csv = path / STATEMENTS_CSV
    if not csv.exists():
        raise DataError(f"{csv} not found (PTB-XL's statement table maps scp codes to diagnostic classes): "
                        f"download it with `ecg-automl data fetch ptbxl --root {path.parent}`, or copy it there from "
                        f"PhysioNet's ptb-xl")
    try:
        table = pd.read_csv(csv, index_col=0)
    except Exception as exc:
        raise DataError(f"{csv}: unreadable ({type(exc).__name__}: {exc})") from exc
    missing = {"diagnostic", "diagnostic_class"} - set(table.columns)
    if missing:
        raise DataError(f"{csv}: missing column(s) {sorted(missing)}")
    diag = table[table["diagnostic"] == 1]
    return {str(code): str(cls) for code, cls in diag["diagnostic_class"].items() if isinstance(cls, str)}


def read_table(path: Path) -> "pd.DataFrame":  # noqa: F821
    """The database table with the columns this source needs, plus ``y``, ``label`` and ``patient``.

    Rows without any diagnostic statement get ``y = -1``.
    """
    import pandas as pd

    csv = path / DATABASE_CSV
    if not csv.exists():
        raise DataError(f"{csv} not found")
    try:
        table = pd.read_csv(csv)
    except Exception as exc:
        raise DataError(f"{csv}: unreadable ({type(exc).__name__}: {exc})") from exc
    if len(table.columns) == 1 and any(sep in str(table.columns[0]) for sep in ";\t"):  # "Index ecg_id invalid"
        raise DataError(f"{csv}: not comma-separated (its header is {str(table.columns[0])[:60]!r}...): PhysioNet's "
                        f"file separates its columns with commas")
    missing = {"ecg_id", "patient_id", "scp_codes", "strat_fold", "filename_lr"} - set(table.columns)
    if missing:
        raise DataError(f"{csv}: missing column(s) {sorted(missing)}")
    table = table.set_index("ecg_id")
    table.index = _ecg_ids(table.index, csv)
    classes = _diagnostic_classes(path)
    ys, labels, patients = [], [], []
    for ecg_id, row in table.iterrows():
        if not isinstance(row["filename_lr"], str) or not row["filename_lr"].strip():
            raise DataError(f"{csv}: ecg_id {ecg_id} has no filename_lr ({_cell(row['filename_lr'])}; the path "
                            f"of its 100 Hz record, e.g. records100/00000/00001_lr)")
        try:
            codes = ast.literal_eval(row["scp_codes"])  # a python dict literal; never eval()
            if not isinstance(codes, dict):
                raise ValueError("not a dict")
        except (ValueError, SyntaxError, TypeError) as exc:
            raise DataError(f"{csv}: ecg_id {ecg_id}: scp_codes {row['scp_codes']!r} is not a dict literal "
                            f"({exc})") from exc
        found = {classes[c] for c in codes if c in classes}
        if found & set(ABNORMAL_CLASSES):
            y, label = 1, "ABN"
        elif found == {"NORM"}:
            y, label = 0, "NORM"
        else:  # no diagnostic statement (or only an unknown superclass)
            y, label = -1, ""
        ys.append(y)
        labels.append(label)
        patients.append(_patient_id(row["patient_id"], ecg_id, csv))
    table = table.assign(y=ys, label=labels, patient=patients)
    folds = pd.to_numeric(table["strat_fold"], errors="coerce")
    bad = table.index[~folds.isin(range(1, 11))]
    if len(bad):
        raise DataError(f"{csv}: ecg_id {bad[0]} has strat_fold {_cell(table.loc[bad[0], 'strat_fold'])} "
                        f"(expected 1-10)")
    table["split"] = np.where(folds == TEST_FOLD, "test", "search")
    crossing = table.groupby("patient")["split"].nunique()
    crossing = crossing[crossing > 1]
    if len(crossing):
        raise DataError(f"{csv}: patient(s) {', '.join(crossing.index[:10])} have records in strat_fold "
                        f"{TEST_FOLD} and in folds 1-9; the test split would leak patients")
    return table


def detect_r_peaks(x: np.ndarray, fs: float) -> np.ndarray:
    """XQRS R peaks (sample indices at ``fs``), run on the signal upsampled to :data:`DETECT_FS`.

    XQRS is tuned for MIT-BIH's 360 Hz; on PTB-XL's 100 Hz records it finds T waves and QRS notches as
    extra beats (about a third of the 500-record subset had RR intervals under 0.3 s, F1 ~0.73 against
    gqrs). Upsampled to 300 Hz it agrees with gqrs and across leads, and finds at least 5 beats in each
    of those records.
    """
    if fs >= DETECT_FS:
        return detect_qrs(x, fs)
    # missing samples bridged at the record's rate first, as chunked predict does: resampled, one NaN spread over
    # 0.2 s, and the straight line bridging that wiped out the QRS it fell on
    q = detect_qrs(resample(fill_nans(x), fs, DETECT_FS), DETECT_FS)
    peaks = np.unique(resampled_positions(q, fs, DETECT_FS, back=True))
    return peaks[(peaks >= 0) & (peaks < len(x))]


def beats_of_record(path: Path, ecg_id: int, row: Any, *, fs: float, window: int) -> BeatDataset | None:
    """Beats of one record (all 12 leads), or None when QRS detection finds fewer than 3 beats."""
    rec = read_record(path / str(row["filename_lr"]))
    if rec.fs != FS_LR:  # the beats and RR intervals would be resampled from the wrong rate, silently
        raise RecordError(f"{path / str(row['filename_lr'])}.hea", f"sampling rate {rec.fs:g} Hz, but every PTB-XL "
                                                                  f"records100 file is sampled at {FS_LR:g} Hz: the "
                                                                  f"header is damaged or edited")
    upper = [(n or "").upper() for n in rec.sig_names]
    lead = upper.index(LEAD) if LEAD in upper else 0
    peaks = detect_r_peaks(rec.signal[:, lead], rec.fs)
    if len(peaks) < MIN_BEATS:
        return None
    X, rr, _ = beats_from_signal(rec.signal, rec.fs, peaks, fs=fs, length=window)
    n = len(X)
    return BeatDataset("ptbxl", X, rr, np.full(n, row["y"], dtype=np.int8), np.full(n, row["label"]),
                       np.full(n, row["patient"]), np.full(n, str(ecg_id)), np.full(n, row["split"]), fs)


def read_ptbxl(path: Path, *, fs: float = 180.0, window: int = 256, records: list[str] | None = None,
               on_bad_record: str = "error") -> BeatDataset:
    """PTB-XL records with a diagnostic label (or the ecg_ids in ``records``) as 12-lead beat windows."""
    path = Path(path)
    table = read_table(path)
    if records is not None:
        try:
            wanted_ids = {int(str(r).strip()) for r in records}
        except ValueError as exc:
            raise DataError(f"ptbxl: records are ecg_id numbers ({exc})") from exc
        unknown = sorted(wanted_ids - set(table.index))
        if unknown:
            raise DataError(f"ptbxl: ecg_id(s) {unknown[:10]} are not in {path / DATABASE_CSV}")
        table = table[table.index.isin(wanted_ids)]
    notes: list[str] = []
    absent = [] if records is not None else _absent_records(path, table)
    if absent:
        table = _drop_absent(path, table, absent, notes)
    no_diag = table.index[table["y"] < 0]
    if records is not None and len(no_diag) == len(table):  # "no beat windows from 0 record(s)"
        raise DataError(f"ptbxl: ecg_id(s) {sorted(int(i) for i in no_diag)[:10]} have no diagnostic statement (no "
                        f"NORM vs abnormal label), so they are left out: name labelled records")
    if len(no_diag):
        (log.warning if records is not None else log.info)(
            "ptbxl: %d record(s) without a diagnostic statement left out%s", len(no_diag),
            f" (ecg_id {', '.join(str(int(i)) for i in no_diag[:10])})" if records is not None else "")
    table = table[table["y"] >= 0].sort_index()
    if on_bad_record == "error":
        _refuse_incomplete(path, table)

    skipped: list[dict] = []
    few: list[int] = []
    empty: list[int] = []

    def read_one(ecg_id: str) -> BeatDataset | None:
        eid = int(ecg_id)
        ds = beats_of_record(path, eid, table.loc[eid], fs=fs, window=window)
        if ds is None:
            few.append(eid)
            log.warning("ptbxl: ecg_id %d: QRS detection found fewer than %d beats; record skipped", eid, MIN_BEATS)
        elif len(ds) == 0:
            empty.append(eid)
        return ds

    parts = read_all([str(i) for i in table.index], read_one, on_bad_record, skipped)
    parts = [p for p in parts if p is not None and len(p)]
    if few:
        log.warning("ptbxl: %d record(s) skipped: QRS detection found fewer than %d beats", len(few), MIN_BEATS)
    if not parts:
        raise DataError(f"ptbxl: no beat windows from {len(table)} record(s) in {path}"
                        + (f" (a {window}-sample window at {fs:g} Hz is {window / fs:.1f} s; PTB-XL records "
                           f"are 10 s)" if empty else ""))
    info = {
        "skipped": skipped,
        "excluded_no_diagnosis": int(len(no_diag)),
        "skipped_few_beats": {"count": len(few), "min_beats": MIN_BEATS, "examples": few[:_EXAMPLES]},
        "no_full_window": {"count": len(empty), "examples": empty[:_EXAMPLES]},
        "records_used": len(parts),
        "not_in_copy": {"count": len(absent), "examples": absent[:_EXAMPLES]},
        "warnings": notes,
        "protocol": f"PTB-XL 100 Hz, 12 leads, XQRS on lead II at {DETECT_FS:g} Hz; NORM vs MI/STTC/CD/HYP; "
                    f"strat_fold 1-9 search, {TEST_FOLD} test",
    }
    return concat("ptbxl", parts, fs, info)


def _absent_records(path: Path, table) -> list[int]:
    """The ecg_ids of the table whose record has neither its .hea nor its .dat in ``path`` (a subset copy)."""
    return [int(eid) for eid, f in table["filename_lr"].items()
            if not (path / f"{f}.hea").exists() and not (path / f"{f}.dat").exists()]


def _drop_absent(path: Path, table, absent: list[int], notes: list[str]):
    """The table without the ``absent`` records, after a warning (kept in ``notes``) saying how many they are;
    DataError when none of its records is there."""
    fetch = "`ecg-automl data fetch ptbxl" + (f" --root {path.parent}`" if path.name == "ptbxl" else "`")
    if len(absent) == len(table):
        raise DataError(f"ptbxl: none of the {len(table)} records {path / DATABASE_CSV} lists is in {path} (e.g. "
                        f"{table['filename_lr'].iloc[0]}.hea). Copy them there, or run {fetch}")
    note = (f"ptbxl: {len(absent)} of the {len(table)} records {DATABASE_CSV} lists are not in {path} (neither "
            f".hea nor .dat, e.g. ecg_id {', '.join(map(str, absent[:5]))}): reading the {len(table) - len(absent)} "
            f"there (a subset copy whose table lists only its own records says nothing). To download the rest: {fetch}")
    log.warning("%s", note)
    notes.append(note)
    return table.drop(index=absent)


def _refuse_incomplete(path: Path, table) -> None:
    """One error naming every record to read that lacks its header or the signal file it names, with the ways
    on, rather than a stop at the first of them."""
    files = {str(eid): f for eid, f in table["filename_lr"].items()}
    # empty files, and the header read only for a signal file of an odd size: reading each header for its signal
    # file's length would take minutes on all of PTB-XL
    gaps = record_problems(path, files, lambda f: missing_ptbxl_files(path, f), read_header=False,
                           dat_bytes=PTBXL_LR_DAT_BYTES, file_of=files.__getitem__)
    if gaps:
        refuse_incomplete(path, "ptbxl", "PTB-XL", list(files), list(gaps),
                          f"{'is' if len(gaps) == 1 else 'are'} incomplete or damaged (the header, or the signal "
                          f"file it names, missing, empty or cut short): {describe_gaps(gaps)}",
                          "copy the missing or damaged files there", "the complete ones")
