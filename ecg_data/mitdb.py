"""MIT-BIH Arrhythmia: AAMI beat classes on lead MLII and the de Chazal inter-patient split."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ._paths import BEAT_ANNOTATIONS, missing_record_files
from ._records import describe_gaps, read_all, record_problems, refuse_incomplete
from ._wfdb_io import _fetch_again, detect_qrs, read_annotations, read_record
from .dataset import BeatDataset, concat
from .errors import DataError, RecordError
from .preprocess import SIMILARITY_LAGS, beats_from_signal, neighbour_similarity

#: AAMI EC57 mapping of MIT-BIH beat symbols. N is normal; S, V, F are abnormal; Q is excluded.
AAMI = {
    "N": "N", "L": "N", "R": "N", "e": "N", "j": "N",
    "A": "S", "a": "S", "J": "S", "S": "S",
    "V": "V", "E": "V",
    "F": "F",
    "/": "Q", "f": "Q", "Q": "Q",
}
ABNORMAL = ("S", "V", "F")

#: Paced records, excluded by the AAMI protocol.
PACED = ("102", "104", "107", "217")
#: de Chazal et al. (2004) inter-patient split: DS1 for the search, DS2 held out for the final test.
#: The records come from 47 subjects: 201 (DS1) and 202 (DS2) are one man, from one tape (202.hea says so);
#: the published split keeps them apart, so this one does too, and docs/DATA.md says so.
#: Their beats share one patient id (:data:`SUBJECTS`), so a split of other records than DS1/DS2 (cross-validation
#: over all of them, say) keeps the two together.
DS1 = ("101", "106", "108", "109", "112", "114", "115", "116", "118", "119", "122", "124", "201", "203",
       "205", "207", "208", "209", "215", "220", "223", "230")
DS2 = ("100", "103", "105", "111", "113", "117", "121", "123", "200", "202", "210", "212", "213", "214",
       "219", "221", "222", "228", "231", "232", "233", "234")

#: The patient id of a record's beats where it is not the record name: 201 and 202 are one subject.
SUBJECTS = {"201": "201+202", "202": "201+202"}

log = logging.getLogger("ecg_data")

LEAD = "MLII"
#: Every MIT-BIH record is sampled at 360 Hz: another rate in a header means a damaged or edited header.
FS = 360.0
#: A record whose annotated beats correlate less than this with their neighbours (median of
#: :func:`~ecg_data.preprocess.neighbour_similarity`) is refused: the 44 records of DS1 and DS2 score 0.89
#: (222) to 0.996, a .dat of random bytes 0.13 and another record's .dat under these annotations 0.08-0.14.
MIN_SIMILARITY = 0.5
#: ... over at least this many beats (fewer say little either way).
MIN_SIMILARITY_BEATS = 20


def beats_of_record(path: Path, record: str, *, fs: float, window: int, split: str) -> BeatDataset:
    """Beats of one record: AAMI-labelled windows on MLII, rhythm features from all beat annotations."""
    rec = read_record(path / record, channels=[LEAD])
    if rec.fs != FS:  # the beat windows and RR intervals would be resampled from the wrong rate, silently
        raise RecordError(f"{path / record}.hea", f"sampling rate {rec.fs:g} Hz, but every MIT-BIH record is "
                                                 f"sampled at {FS:g} Hz: the header is damaged or edited")
    samples, symbols = read_annotations(path / record, n_samples=len(rec.signal), checked=AAMI)
    is_beat = np.isin(symbols, list(AAMI))
    samples, symbols = samples[is_beat], symbols[is_beat]
    if len(samples) == 0:
        raise RecordError(f"{path / record}.atr", "no beat annotations (a rhythm- or noise-only annotation file): "
                                                 "the record has no labelled beats")
    X, rr, keep = beats_from_signal(rec.signal, rec.fs, samples, fs=fs, length=window)
    annotated = np.array([AAMI[s] for s in symbols])
    is_q, classes = annotated == "Q", annotated[keep]
    # a window with no ECG in it (a flat or lead-off stretch, bridged by the filter) trained as a labelled beat
    no_signal = (classes != "Q") & _no_signal(rec.signal[:, 0], samples, rec.fs, fs, window)[keep]
    use = (classes != "Q") & ~no_signal
    n = int(use.sum())
    _refuse_unlike_beats(path, record, X[:, :, 0], fs, rec.signal, rec.fs, window)
    if no_signal.any():
        log.warning("mitdb %s: %d annotated beat(s) lie where the signal is flat or missing (a lead off?): left out",
                    record, int(no_signal.sum()))
    # what the protocol leaves out of this record, for `data info` (summed over records by read_mitdb)
    left_out = {"class_q": int(is_q.sum()), "no_full_window": int((~is_q).sum()) - int((classes != "Q").sum()),
                "no_signal": int(no_signal.sum())}
    return BeatDataset(
        "mitdb", X[use], rr[use], np.isin(classes[use], ABNORMAL).astype(np.int8), classes[use],
        np.full(n, SUBJECTS.get(record, record)), np.full(n, record), np.full(n, split), fs, {"split": split, "left_out": left_out})


def _no_signal(x: np.ndarray, samples: np.ndarray, fs_record: float, fs: float, window: int) -> np.ndarray:
    """Mask of the beats whose window, in the record's own samples, holds no ECG: one value throughout, or missing
    samples only (a lead off). After filtering such a window is the filter's decaying tail, which z-scores to
    a wave of its own (or to ~0), so this is judged before it."""
    half = int(round(window / 2 * fs_record / fs))
    out = np.zeros(len(samples), dtype=bool)
    for i, s in enumerate(np.asarray(samples, dtype=np.int64)):
        seg = x[max(s - half, 0):s + half]
        seg = seg[np.isfinite(seg)]
        out[i] = seg.size == 0 or np.ptp(seg) == 0
    return out


def _refuse_unlike_beats(path: Path, record: str, windows: np.ndarray, fs: float, signal: np.ndarray,
                         fs_record: float, window: int) -> None:
    """RecordError when the windows at the annotated beats do not look like one heart's beats: a signal file of the
    right size but the wrong content (random bytes, another record's .dat) reads without any error, and would
    train and score a model on noise labelled with real beat classes. Which file to blame is then asked of the
    signal itself: where the beats wfdb's XQRS detector finds in it do look like one heart's, the annotations do
    not fall on this signal's beats (another record's .atr, or a .dat and header both replaced), so both files
    are named; where they do not either, the signal is not an ECG."""
    if len(windows) < MIN_SIMILARITY_BEATS:
        return
    sim = float(np.nanmedian(neighbour_similarity(windows, fs)[0]))
    if sim >= MIN_SIMILARITY:
        return
    fetch = (f"run `ecg-automl data fetch mitdb --root {path.parent}`, or copy them again" if path.name == "mitdb"
             else "copy or download them again")
    found = detect_qrs(signal[:, 0], fs_record)
    detected = beats_from_signal(signal, fs_record, found, fs=fs, length=window)[0][:, :, 0] if len(found) else windows[:0]
    sim_found = (float(np.nanmedian(neighbour_similarity(detected, fs)[0])) if len(detected) >= MIN_SIMILARITY_BEATS
                 else float("nan"))
    if sim_found >= MIN_SIMILARITY:
        raise RecordError(str(path / record) + ".atr", f"its beats do not fall on the heartbeats of {record}.dat "
                          f"(median correlation of each annotated beat with the {SIMILARITY_LAGS} before it "
                          f"{sim:.2f}, under {MIN_SIMILARITY:g}, but {sim_found:.2f} at the beats wfdb's XQRS "
                          f"detector finds in the signal; every MIT-BIH record has 0.89 or more at its annotated "
                          f"beats): one of the two files is another record's or damaged, {record}.atr or {record}.dat "
                          f"with its header. Remove {record}.atr, {record}.dat and {record}.hea and " + fetch)
    raise RecordError(str(path / record) + ".dat", f"the signal at its annotated beats does not look like beats of "
                      f"one heart (median correlation {sim:.2f} of each with the {SIMILARITY_LAGS} before it, "
                      f"under {MIN_SIMILARITY:g}; every MIT-BIH record has 0.89 or more, and the beats wfdb's "
                      f"XQRS detector finds in it do not look like one heart's either): the file holds something "
                      f"other than this record's ECG (garbled bytes, or another record's .dat). Remove it and "
                      + _fetch_again(path / record))


def read_mitdb(path: str | Path, *, fs: float = 180.0, window: int = 256, records: list[str] | None = None,
               on_bad_record: str = "error") -> BeatDataset:
    """All non-paced MIT-BIH records (or ``records``), DS1 as 'search' and DS2 as 'test'."""
    path = Path(path)
    wanted = [r for r in DS1 + DS2 if records is None or r in records]
    unknown = sorted(set(records or []) - set(DS1 + DS2))
    if unknown:
        raise DataError(f"mitdb: records {unknown} are not in DS1/DS2 (paced records {PACED} are excluded)")
    if on_bad_record == "error":
        _refuse_missing(path, wanted)
    skipped: list[dict] = []
    parts = read_all(wanted, lambda r: beats_of_record(path, r, fs=fs, window=window,
                                                        split="search" if r in DS1 else "test"),
                     on_bad_record, skipped)
    beats_left_out = {kind: {part: sum(p.info["left_out"][kind] for p in parts if p.info["split"] == part)
                             for part in ("search", "test")} for kind in ("class_q", "no_full_window", "no_signal")}
    return concat("mitdb", parts, fs, {"skipped": skipped, "protocol": "de Chazal DS1/DS2, AAMI, MLII",
                                       "paced_records_excluded": list(PACED) if records is None else [],
                                       "beats_left_out": beats_left_out})


def _refuse_missing(path: Path, wanted: list[str]) -> None:
    """One error naming every record without a header, or else every record without the signal file its header
    names or its .atr beat annotations, or with one of them damaged (empty, unreadable, shorter than its header
    says), rather than a stop at the first of them: a folder with only some records or files, or some cut short, is
    most often a partial download or a hand copy. The records it suggests going on with are sound."""
    missing = [r for r in wanted if not (path / f"{r}.hea").is_file()]
    if missing:
        _refuse(path, wanted, missing, f"{'has' if len(missing) == 1 else 'have'} no header (.hea): "
                                       + _names(missing), "copy them there", "the ones present")
        return
    annotation = BEAT_ANNOTATIONS["mitdb"]
    gaps = record_problems(path, wanted, lambda r: missing_record_files(path, r, annotation), annotation)
    if gaps:
        _refuse(path, wanted, list(gaps), f"{'is' if len(gaps) == 1 else 'are'} incomplete or damaged (the signal "
                                          f"file its header names, or its .atr beat annotations, missing, empty or "
                                          f"cut short): {describe_gaps(gaps)}",
                "copy the missing or damaged files there", "the complete ones")


def _names(records: list[str]) -> str:
    """The first 12 record names, then how many more."""
    return ", ".join(records[:12]) + (f" and {len(records) - 12} more" if len(records) > 12 else "")


def _refuse(path: Path, wanted: list[str], bad: list[str], what: str, copy: str, good: str) -> None:
    """RecordError: ``bad`` of the ``wanted`` records ``what``, and the ways on (see :func:`refuse_incomplete`)."""
    refuse_incomplete(path, "mitdb", "MIT-BIH", wanted, bad, what, copy, good)
