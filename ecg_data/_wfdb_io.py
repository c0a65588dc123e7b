"""Reading WFDB records and annotations with errors that name the file and the problem."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import RecordError

_BYTES_PER_SAMPLE = {"212": 1.5, "16": 2, "61": 2, "80": 1, "8": 1, "24": 3, "32": 4, "310": 4 / 3, "311": 4 / 3}


@dataclass
class Record:
    """One WFDB record in physical units."""

    path: Path
    signal: np.ndarray  # (samples, channels) float64
    fs: float
    sig_names: list[str]
    comments: list[str]


def _signal_files(header) -> dict[str, list[int]]:
    """Each signal file the header names, with the indices of the signals it holds."""
    files: dict[str, list[int]] = {}
    for i, fname in enumerate(header.file_name or []):
        files.setdefault(fname, []).append(i)
    return files


def _declared_bytes(header, chans: list[int]) -> int | None:
    """The bytes the header's sample count takes in the file of signals ``chans`` (None: a format not sized here)."""
    fmt = str(header.fmt[chans[0]])
    per = _BYTES_PER_SAMPLE.get(fmt)
    if per is None or header.sig_len is None:
        return None
    offset = int((header.byte_offset or [0] * len(header.fmt))[chans[0]] or 0)
    frame = sum(int((header.samps_per_frame or [1] * len(header.fmt))[c] or 1) for c in chans)  # samples per frame
    return offset + math.ceil(header.sig_len * frame * per)


def _check_signal_files(path: Path, header) -> None:
    """Compare each signal file's size with what the header promises (catches truncated .dat files)."""
    for fname, chans in _signal_files(header).items():
        fpath = path.parent / fname
        if not fpath.exists():
            raise RecordError(str(fpath), "signal file is missing (the header names it)")
        need = _declared_bytes(header, chans)
        if need is None:
            continue
        fmt = str(header.fmt[chans[0]])
        have = fpath.stat().st_size
        if have < need:
            raise RecordError(str(fpath), f"truncated: {have} bytes, but the header ({path.name}.hea) declares "
                                          f"{header.sig_len} samples x {len(chans)} signals in format {fmt} "
                                          f"= {need} bytes")


def _refuse_empty(path: Path, what: str) -> None:
    """A zero-length file (an interrupted copy or download) is reported as empty, not as what wfdb trips on."""
    if path.stat().st_size == 0:
        raise RecordError(str(path), f"empty {what} file (0 bytes): an interrupted copy or download? "
                                     f"Copy or download it again")


def _record_line(hea: Path) -> str:
    """The header's record line (its first line that is neither blank nor a comment)."""
    for line in hea.read_text(encoding="latin-1").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            return line.strip()
    return ""


#: The fields of a WFDB signal line before the signal's name (file, format, gain, ADC resolution, ADC zero, initial
#: value, checksum, block size).
_FIELDS_BEFORE_NAME = 8


def _check_header(hea: Path, header) -> None:
    """Refuse a header wfdb parsed leniently (a bad sample count, missing signal lines), naming the file, so
    that it is reported as malformed rather than as a missing channel or a sample-count mismatch later."""
    line = _record_line(hea)
    fields = line.split()
    given = fields[2].split("/")[0] if len(fields) > 2 else None  # absent: WFDB's default 250 Hz applies
    try:
        fs = float(given) if given is not None else float(header.fs)
    except (ValueError, TypeError):
        fs = math.nan
    if not math.isfinite(fs) or fs <= 0:  # first: a bad rate ("360x") also leaves wfdb without a sample count
        raise RecordError(str(hea), f"malformed header: the record line {line!r} gives no valid sampling rate "
                                    f"({given!r}; expected a positive number of Hz after the signal count)")
    if header.sig_len is None:
        raise RecordError(str(hea), f"malformed header: the record line {line!r} gives no valid sample count "
                                    f"(expected: name, signals, sampling rate, samples)")
    n_sig = int(header.n_sig or 0)
    got = len(header.sig_name or [])
    if got != n_sig:
        raise RecordError(str(hea), f"malformed header: the record line {line!r} declares {n_sig} signal(s), but "
                                    f"{got} signal line(s) could be read (one per signal: file, format, gain, "
                                    f"..., name)")
    names = list(header.sig_name or [])
    lines = [ln.split() for ln in hea.read_text(encoding="latin-1").splitlines()
             if ln.strip() and not ln.lstrip().startswith("#")][1:1 + len(names)]
    # a signal's name is optional in WFDB, but a line without it that also stops before its checksum and block size
    # while the other lines name theirs was cut short: wfdb read its missing fields as None, without an error
    cut = [i + 1 for i, name in enumerate(names) if not name and i < len(lines) and len(lines[i]) < _FIELDS_BEFORE_NAME]
    if cut and any(names):
        raise RecordError(str(hea), f"malformed header: signal line(s) {', '.join(map(str, cut))} of {len(names)} "
                                    f"end before the signal's checksum and name, which the others give (a header cut "
                                    f"short?)")


@dataclass
class Header:
    """A WFDB record's header, checked against its signal files, without the samples (for chunked reading)."""

    path: Path
    fs: float
    sig_names: list[str]
    n_samples: int
    comments: list[str]
    #: Each signal's checksum (the 16-bit sum of its samples; None where the header gives none), and the file it is
    #: in; ``checksums`` None (a Header made by hand) reads spans in physical units, unchecked.
    checksums: list[int | None] | None = None
    file_names: list[str] | None = None


def read_header(path: str | Path) -> Header:
    """Read and check a WFDB record's header (``path`` without extension); the signal itself is not read."""
    import wfdb

    path = Path(path)
    hea = path.with_name(path.name + ".hea")
    if not hea.exists():
        if path.is_dir():  # "mitdb.hea: header file not found" for the folder of the records
            some = sorted(p.stem for p in path.glob("*.hea"))
            example = f", e.g. {path / some[0]}" if some else ""
            raise RecordError(str(path), f"a folder, not a record: name a record in it, without extension{example}")
        raise RecordError(str(hea), "header file not found")
    _refuse_empty(hea, "header")
    try:
        header = wfdb.rdheader(str(path))
    except Exception as exc:
        raise RecordError(str(hea), f"unreadable header ({type(exc).__name__}: {exc})") from exc
    if not isinstance(header, wfdb.Record):  # it was called malformed ("declares 1 signal(s), but 0 signal line(s)")
        raise RecordError(str(hea), f"a multi-segment record ({len(header.seg_name or [])} segments), which ecg-automl "
                                    f"does not read: write it as one segment first, e.g. in Python, beside it: "
                                    f"r = wfdb.rdrecord('{path.name}'); wfdb.wrsamp('{path.name}_single', fs=r.fs, "
                                    f"units=r.units, sig_name=r.sig_name, p_signal=r.p_signal, fmt=['16'] * r.n_sig)")
    _check_header(hea, header)
    _check_signal_files(path, header)
    # a signal of several samples per frame is read averaged per frame, and its checksum is over every sample: such
    # records are read in physical units and not checked against their checksums
    checked = not _multi_frequency(header)
    return Header(path, float(header.fs), list(header.sig_name or []), int(header.sig_len),
                  list(header.comments or []),
                  checksums=list(header.checksum or [None] * len(header.sig_name or [])) if checked else None,
                  file_names=list(header.file_name or []))


def _multi_frequency(header) -> bool:
    """Whether some signal of the record has more than one sample per frame (a WFDB multi-frequency record)."""
    return any(int(n or 1) > 1 for n in (header.samps_per_frame or []))


class SpanChecksums:
    """The running 16-bit sums of some channels of a record read a span at a time (chunked reading, for
    ``predict``), checked against the header's checksums once every sample has been read in order: the check
    :func:`read_record` makes on a whole record, without holding the record in memory."""

    def __init__(self, head: Header, channels: list[int]) -> None:
        self.head, self.channels = head, list(channels)
        self._sums = np.zeros(len(self.channels), dtype=np.int64)
        self._next = 0  # the first sample not yet summed; -1 once a span was skipped or read out of order

    def add(self, start: int, digital: np.ndarray) -> None:
        """Count the digital samples ``start:start + len(digital)`` of the channels (in their order)."""
        if self._next != start:
            self._next = -1
            return
        self._sums = (self._sums + np.asarray(digital, dtype=np.int64).sum(axis=0)) % 65536
        self._next = start + len(digital)

    def check(self) -> None:
        """Refuse a channel whose samples, all read, do not sum to its header's checksum (see
        :func:`_check_checksums`); nothing is checked until the spans have covered the record from its start."""
        head = self.head
        if head.checksums is None or self._next != head.n_samples:
            return
        for c, got in zip(self.channels, self._sums):
            want = head.checksums[c]
            if want is not None and (int(got) - int(want)) % 65536:
                raise _checksum_error(head.path, head.sig_names[c], head.file_names[c], int(want), int(got))


def read_span(head: Header, start: int, stop: int, channels: list[int], *,
              sums: SpanChecksums | None = None) -> np.ndarray:
    """Samples ``start:stop`` of the given channel indices in physical units, (stop - start, channels) float64:
    the piece of a long record that chunked processing holds at a time. ``sums`` (of the same channels), when
    given, counts the span's digital samples towards the header's checksums."""
    import wfdb

    digital = head.checksums is not None  # a header read_header read: digital samples, as read_record reads them
    try:
        rec = wfdb.rdrecord(str(head.path), sampfrom=int(start), sampto=int(stop), channels=list(channels),
                            physical=not digital)
        if digital and rec.d_signal is not None:
            if sums is not None:
                sums.add(int(start), rec.d_signal)
            rec.p_signal = rec.dac(return_res=64)  # what rdrecord's physical=True gives, to the bit
    except RecordError:
        raise
    except Exception as exc:
        raise RecordError(str(head.path) + ".dat", f"unreadable signal at samples {start}-{stop} "
                                                   f"({type(exc).__name__}: {exc})") from exc
    sig = rec.p_signal
    if sig is None or sig.shape[0] != stop - start:
        got = None if sig is None else sig.shape[0]
        raise RecordError(str(head.path) + ".dat", f"decoded {got} samples at {start}-{stop}, expected "
                                                   f"{stop - start} (the header declares {head.n_samples})")
    return np.asarray(sig, dtype=np.float64)


def read_record(path: str | Path, channels: list[str] | None = None) -> Record:
    """Read a WFDB record (``path`` without extension), optionally only the named channels."""
    import wfdb

    path = Path(path)
    hea = path.with_name(path.name + ".hea")
    head = read_header(path)
    names = head.sig_names
    idx = None
    if channels is not None:
        missing = [c for c in channels if c not in names]
        if missing:
            raise RecordError(str(hea), f"no channel {missing[0]!r} (channels: {', '.join(names)})")
        idx = [names.index(c) for c in channels]
    try:
        if head.checksums is None:  # a multi-frequency record (see read_header): physical, unchecked
            rec = wfdb.rdrecord(str(path), channels=idx)
            sig = rec.p_signal
        else:
            rec = wfdb.rdrecord(str(path), channels=idx, physical=False)  # digital: the header's checksums are of it
            _check_checksums(path, rec)  # (read_header refused a multi-segment record)
            sig = rec.dac(return_res=64)  # what rdrecord's physical=True gives, to the bit
    except RecordError:
        raise
    except Exception as exc:
        raise RecordError(str(path) + ".dat", f"unreadable signal ({type(exc).__name__}: {exc})") from exc
    if sig is None or sig.shape[0] != head.n_samples:
        got = None if sig is None else sig.shape[0]
        raise RecordError(str(path) + ".dat", f"decoded {got} samples but the header declares {head.n_samples}")
    return Record(path, np.asarray(sig, dtype=np.float64), float(rec.fs), list(rec.sig_name), list(rec.comments or []))


def _check_checksums(path: Path, rec) -> None:
    """Refuse a signal whose samples do not sum to its header's checksum (WFDB: the 16-bit sum of a signal's
    samples): a damaged file, or another record's file of the same size, which nothing else finds for a record
    without beat annotations. Signals whose header gives no checksum are not checked."""
    declared = rec.checksum or []
    if not declared:
        return
    for name, fname, want, got in zip(rec.sig_name, rec.file_name, declared, rec.calc_checksum()):
        if want is not None and (int(got) - int(want)) % 65536:
            raise _checksum_error(path, name, fname, int(want), int(got))


def _checksum_error(path: Path, name: str, fname: str, want: int, got: int) -> RecordError:
    """The error for signal ``name`` of record ``path`` (in file ``fname``) whose samples sum to ``got``, not to
    its header's checksum ``want``; when the file is longer than the header's sample count takes, the header may be
    what is wrong (a sample count edited down), and the error says so."""
    import wfdb

    problem = (f"signal {name!r} does not match its header ({path.name}.hea): its samples sum to checksum "
               f"{(got + 32768) % 65536 - 32768}, the header says {want}; ")
    try:
        header = wfdb.rdheader(str(path))
        need = _declared_bytes(header, _signal_files(header)[fname])
        have = (path.parent / fname).stat().st_size
    except Exception:  # the note is a hint only
        need = have = None
    if need is not None and have > need:
        problem += (f"{fname} holds {have} bytes, more than the {need} its header's {header.sig_len} samples take, so "
                    f"the header's sample count may be what is wrong (correct it), or the file is another record's. "
                    f"Otherwise remove both and {_fetch_again(path)}")
    else:
        problem += f"the file is damaged or another record's. Remove it and {_fetch_again(path)}"
    return RecordError(str(path.parent / fname), problem)


def _fetch_again(path: Path) -> str:
    """How to get a damaged file of record ``path`` again: `ecg-automl data fetch` (which skips the files already
    there) when the record lies in a database folder it fills, else a copy."""
    for folder in path.parents:
        if folder.name in ("mitdb", "ptbdb", "ptbxl"):
            return f"run `ecg-automl data fetch {folder.name} --root {folder.parent}`, or copy it again"
    return "copy or download it again"


def annotation_file_problem(ann_path: Path) -> str:
    """What is wrong with a WFDB annotation file as a whole (empty string: nothing found): empty, or not ending
    with the zero word (two zero bytes) that ends every MIT-format annotation file. A file cut short or garbled
    otherwise reads without error as fewer beats, or as beats outside the record."""
    size = ann_path.stat().st_size
    if size == 0:
        return "empty annotation file (0 bytes): an interrupted copy or download? Copy or download it again"
    with open(ann_path, "rb") as f:
        f.seek(-min(size, 2), 2)
        tail = f.read()
    if size % 2 or tail != b"\0\0":
        return (f"cut short or garbled: it does not end with the two zero bytes that end every WFDB annotation file "
                f"({size} bytes; an interrupted copy or download?)")
    return ""


def read_annotations(path: str | Path, extension: str = "atr", *, n_samples: int | None = None,
                     checked: Iterable[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Reference annotations of a record: (sample indices, symbols). The file must end as a whole one does
    (:func:`annotation_file_problem`) and, given the record's ``n_samples``, annotate samples inside the record:
    those of the ``checked`` symbols (the beats the caller uses; all when None), so that a rhythm or comment
    annotation another tool put at the record's end does not refuse it."""
    import wfdb

    path = Path(path)
    ann_path = path.with_name(f"{path.name}.{extension}")
    if not ann_path.exists():
        raise RecordError(str(ann_path), "annotation file not found (beat labels come from it)")
    if problem := annotation_file_problem(ann_path):
        raise RecordError(str(ann_path), f"{problem}. Remove it and {_fetch_again(path)}"
                          if not problem.startswith("empty") else problem)
    try:
        ann = wfdb.rdann(str(path), extension)
    except Exception as exc:
        raise RecordError(str(ann_path), f"unreadable annotations ({type(exc).__name__}: {exc})") from exc
    samples = np.asarray(ann.sample, dtype=np.int64)
    if n_samples is not None and len(samples):
        outside = (samples < 0) | (samples >= n_samples)
        if checked is not None:
            outside &= np.isin(np.asarray(ann.symbol), list(checked))
        if outside.any():
            raise RecordError(str(ann_path), f"{int(outside.sum())} of its {len(samples)} annotations lie outside the "
                                             f"record (samples 0-{n_samples - 1}), the first at sample "
                                             f"{int(samples[outside][0])}: the file is damaged or another record's. "
                                             f"Remove it and {_fetch_again(path)}")
    return samples, np.asarray(ann.symbol)


def detect_qrs(x: np.ndarray, fs: float) -> np.ndarray:
    """R-peak sample indices from wfdb's XQRS detector (used where no beat annotations exist)."""
    from wfdb import processing

    from .preprocess import fill_nans

    sig = np.asarray(x, dtype=np.float64)
    finite = np.isfinite(sig)
    if not finite.any():
        return np.zeros(0, dtype=np.int64)
    if not finite.all():  # one missing sample (WFDB's invalid value) lost every beat of the record: bridged
        sig = fill_nans(sig)
    if np.ptp(sig) == 0:
        return np.zeros(0, dtype=np.int64)
    xqrs = processing.XQRS(sig=sig, fs=fs)
    xqrs.detect(verbose=False)
    return np.asarray(xqrs.qrs_inds, dtype=np.int64)
