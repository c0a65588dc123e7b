"""PTB Diagnostic ECG Database: healthy controls vs patients, beats from XQRS on lead ii.

Layout (PhysioNet ``ptbdb``): ``<path>/patientNNN/sNNNNlre.{hea,dat,xyz}`` and a ``RECORDS`` file listing
``patientNNN/sNNNN_re`` lines; 1000 Hz, 15 leads (i, ii, ..., v6, vx, vy, vz). The label is the header's
``Reason for admission:`` comment: "Healthy control" is normal (y=0, label 'normal'), any other reason
abnormal (y=1, 'abnormal'). A header without that line is a bad record; a reason of "n/a" (PTB leaves
some patients undiagnosed) is not a label, so those records are left out and counted.

The patient is the ``patientNNN`` folder. The test part is about 20 % of the patients, each drawn by a hash of its
name (:func:`held_out_patients`), so the split depends neither on the ``records`` filter nor on which other
patients' headers could be read.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from ._paths import missing_record_files
from ._records import ON_BAD_RECORD, describe_gaps, read_all, record_problems, refuse_incomplete
from ._wfdb_io import detect_qrs, read_record
from .dataset import BeatDataset, concat
from .errors import DataError, RecordError
from .preprocess import beats_from_signal

log = logging.getLogger("ecg_data")

#: Every PTB Diagnostic record is sampled at 1000 Hz: another rate in a header means a damaged or edited header.
FS = 1000.0
LEAD = "ii"
NORMAL_REASON = "healthy control"
#: Reasons that are no diagnosis: such records carry no label and are left out.
NO_REASON = ("n/a", "na", "")
N_FOLDS = 5
SEED = 0
#: How the held-out patients are chosen (recorded by a study: :func:`data_layout`).
HOLD_OUT = 2
HOLD_OUTS = {1: "the first fold of StratifiedGroupKFold(5, shuffle, random_state=0) over the patients read",
             2: "each patient by a hash of its name, about 1 in 5"}
_REASON = re.compile(r"^\s*#?\s*reason for admission\s*:\s*(.*?)\s*$", re.IGNORECASE)


def record_names(path: Path) -> list[str]:
    """Record names (``patient001/s0010_re``) from ``RECORDS``, or from the ``.hea`` files when it is absent."""
    listing = path / "RECORDS"
    if listing.exists():
        names = [ln.strip().strip("/") for ln in listing.read_text().splitlines()]
        names = [n for n in names if n and not n.startswith("#")]
    else:
        names = sorted(str(h.relative_to(path).with_suffix("")) for h in path.glob("*/*.hea"))
    if not names:
        raise DataError(f"ptbdb: no records in {path} " + (
            "(its RECORDS file lists none: list the records, one patientNNN/sNNNN_re a line, or remove it to read the "
            "patient*/ *.hea headers there)" if listing.exists() else "(neither a RECORDS file nor patient*/ *.hea "
                                                                       "headers)"))
    return names


def patient_of(record: str) -> str:
    """``patient001/s0010_re`` -> ``patient001``."""
    return record.split("/")[0] if "/" in record else record


def reason_of(comments: list[str], hea: str) -> str:
    """The ``Reason for admission`` of a header's comment lines; RecordError when there is none."""
    for line in comments:
        m = _REASON.match(line)
        if m:
            return m.group(1)
    raise RecordError(hea, "no 'Reason for admission:' comment line in the header (the label comes from it)")


def label_of(reason: str) -> int | None:
    """0 for a healthy control, 1 for any other reason, None for 'n/a' (no diagnosis)."""
    r = reason.strip().lower()
    if r in NO_REASON:
        return None
    return 0 if r.startswith(NORMAL_REASON) else 1


def _header_label(path: Path, record: str) -> int | None:
    import wfdb

    hea = path / f"{record}.hea"
    if not hea.exists():
        raise RecordError(str(hea), "header file not found")
    try:
        header = wfdb.rdheader(str(path / record))
    except Exception as exc:
        raise RecordError(str(hea), f"unreadable header ({type(exc).__name__}: {exc})") from exc
    return label_of(reason_of(list(header.comments or []), str(hea)))


def held_out_patients(patient_labels: dict[str, int]) -> set[str]:
    """The held-out patients: each whose name hashes into the first 1/:data:`N_FOLDS` of the range, so that a
    patient's side depends on its name alone, not on which other patients' headers could be read (a fold of a
    shuffled split over the patients present moved 45 of 59 test patients when one header was missing, so a search
    on a partial copy tested, once the copy was complete, on patients it had searched on). A class without a
    patient on one side gets its patient of lowest (or highest) hash moved there: a tiny database still tests
    both classes."""
    import hashlib

    def draw(patient: str) -> float:
        return int(hashlib.sha256(f"ptbdb-test-{SEED}:{patient}".encode()).hexdigest()[:13], 16) / 16 ** 13

    by_class = {c: sorted((p for p, y in patient_labels.items() if y == c), key=draw) for c in (0, 1)}
    if min(len(ps) for ps in by_class.values()) < 2:
        raise DataError(f"ptbdb: holding out patients of each label needs at least 2 patients of each (one held out, "
                        f"one searched); the database has {len(by_class[0])} healthy and {len(by_class[1])} other "
                        f"labelled patients")
    test = {p for p in patient_labels if draw(p) < 1 / N_FOLDS}
    for ps in by_class.values():
        if not test & set(ps):
            test.add(ps[0])
        if set(ps) <= test:
            test.discard(ps[-1])
    return test


def data_layout() -> int:
    """How the held-out patients are chosen (:data:`HOLD_OUTS`): a study records it, so that its trials are not
    resumed, nor its final test rerun, on another patient split."""
    return HOLD_OUT


def describe_layout(layout: int | None) -> str:
    """One hold-out in words, for a refused study (``None``: one made before studies recorded it, layout 1)."""
    if layout is None:
        return f"no layout recorded (made before studies recorded one, so layout 1: {HOLD_OUTS[1]})"
    return f"layout {layout} ({HOLD_OUTS[layout]})" if layout in HOLD_OUTS else f"layout {layout}"


def beats_of_record(path: Path, record: str, *, fs: float, window: int, y: int, split: str) -> BeatDataset:
    """Beats of one record on lead ii (first channel when there is no ii), all with the record's label."""
    rec = read_record(path / record)
    if rec.fs != FS:  # the beats would be resampled from the wrong rate, silently
        raise RecordError(f"{path / record}.hea", f"sampling rate {rec.fs:g} Hz, but every PTB Diagnostic record is "
                                                 f"sampled at {FS:g} Hz: the header is damaged or edited")
    lower = [(n or "").lower() for n in rec.sig_names]
    lead = lower.index(LEAD) if LEAD in lower else 0
    x = rec.signal[:, lead]
    peaks = detect_qrs(x, rec.fs)
    if len(peaks) == 0:
        raise RecordError(str(path / record) + ".dat", f"no QRS complexes detected on lead {rec.sig_names[lead]}")
    X, rr, _ = beats_from_signal(x, rec.fs, peaks, fs=fs, length=window)
    n = len(X)
    return BeatDataset("ptbdb", X, rr, np.full(n, y, dtype=np.int8), np.full(n, "abnormal" if y else "normal"),
                       np.full(n, patient_of(record)), np.full(n, record), np.full(n, split), fs)


def read_ptbdb(path: Path, *, fs: float = 180.0, window: int = 256, records: list[str] | None = None,
               on_bad_record: str = "error") -> BeatDataset:
    """PTB records (all, or those in ``records``: ``patient001/s0010_re`` or ``s0010_re``) as lead-ii beats."""
    if on_bad_record not in ON_BAD_RECORD:
        raise ValueError(f"on_bad_record must be one of {ON_BAD_RECORD}, not {on_bad_record!r}")
    path = Path(path)
    names = record_names(path)
    if records is not None:
        want = {str(r).strip().strip("/") for r in records}
        selected = [n for n in names if n in want or n.split("/")[-1] in want]
        found = set(selected) | {n.split("/")[-1] for n in selected}
        unknown = sorted(want - found)
        if unknown:
            raise DataError(f"ptbdb: records {unknown[:10]} are not listed in {path / 'RECORDS'}")
    else:
        selected = names

    # Labels of every record's header first: the split is over all patients of the database.
    labels: dict[str, int | None] = {}
    header_errors: dict[str, RecordError] = {}
    for name in names:
        try:
            labels[name] = _header_label(path, name)
        except RecordError as exc:
            header_errors[name] = exc
    patient_labels: dict[str, int] = {}
    for name, y in labels.items():
        if y is not None:  # a patient is abnormal when any of its records is
            p = patient_of(name)
            patient_labels[p] = max(patient_labels.get(p, 0), y)
    held_out = held_out_patients(patient_labels)

    no_diagnosis = [n for n in selected if n in labels and labels[n] is None]
    if no_diagnosis:
        log.info("ptbdb: %d record(s) with reason for admission 'n/a' left out", len(no_diagnosis))

    to_read = [n for n in selected if n not in no_diagnosis]
    if on_bad_record == "error":
        _refuse_incomplete(path, to_read)

    def read_one(name: str) -> BeatDataset:
        if name in header_errors:
            raise header_errors[name]
        return beats_of_record(path, name, fs=fs, window=window, y=int(labels[name]),
                               split="test" if patient_of(name) in held_out else "search")

    skipped: list[dict] = []
    parts = read_all(to_read, read_one, on_bad_record, skipped)
    parts = [p for p in parts if len(p)]
    if not parts:
        raise DataError(f"ptbdb: no beat windows from {len(selected)} record(s) in {path}")
    info = {
        "skipped": skipped,
        "excluded_no_diagnosis": len(no_diagnosis),
        "protocol": f"PTB lead ii, XQRS beats; healthy control vs other reasons; "
                    f"{len(held_out)}/{len(patient_labels)} patients held out ({HOLD_OUTS[HOLD_OUT]})",
    }
    return concat("ptbdb", parts, fs, info)


def _refuse_incomplete(path: Path, wanted: list[str]) -> None:
    """One error naming every record without its header or a signal file its header names, with the ways on,
    rather than a stop at the first of them: a folder with only some files is most often a partial download or
    a hand copy."""
    gaps = record_problems(path, wanted, lambda r: missing_record_files(path, r))
    if gaps:
        refuse_incomplete(path, "ptbdb", "PTB", wanted, list(gaps),
                          f"{'is' if len(gaps) == 1 else 'are'} incomplete or damaged (the header, or a signal file "
                          f"it names, missing, empty or cut short): " + describe_gaps(gaps),
                          "copy the missing or damaged files there", "the complete ones")


read_ptbdb.data_layout = data_layout  # type: ignore[attr-defined]
read_ptbdb.describe_layout = describe_layout  # type: ignore[attr-defined]
