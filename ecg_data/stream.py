"""Chunked processing of long records (Holter recordings) with bounded memory, for ``predict``.

A record is read a chunk at a time (wfdb's ``sampfrom``/``sampto``), each chunk with an overlap of
:data:`MARGIN_S` seconds on either side that is filtered with it and then dropped. The zero-phase filters
(XQRS's 5-20 Hz band-pass and the models' 0.5-40 Hz one) forget where they started within about 20 s, so a
chunk's core equals the whole-record result up to floating-point rounding (about 1e-13 mV, measured): not bit for
bit, because ``filtfilt``'s rounding depends on where it starts. Everything else is made exact: each R peak and each
beat belongs to exactly one chunk core, and the detector's adaptive state (XQRS's thresholds, its learning on the
first beats, its scan for local peaks) runs once over the whole record's candidate peaks, not once per chunk.
Below 300 Hz every chunk border is a multiple of the resampler's step, so each chunk's resampled samples are the
whole lead's. Missing samples (NaN: a lead-off gap) are bridged as :func:`ecg_data.preprocess.fill_nans` bridges
them on the whole lead, by a straight line between the finite samples on either side of the gap, even when those
lie outside the chunk (see :func:`missing_runs`): the result does not depend on where the chunk borders fall.

Only numpy, scipy and wfdb: this module is on the TensorFlow-free predict path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from scipy import signal as _signal
from scipy.ndimage import maximum_filter1d

from ._wfdb_io import Header, SpanChecksums, read_span
from .preprocess import HIGH_CUT, LOW_CUT, bandpass, resample, resample_ratio as _down, resampled_positions

#: Seconds of signal per chunk core (memory grows with it, not with the record).
CHUNK_S = 600.0
#: Seconds of overlap read and filtered on either side of a core: the band-pass filters' start-up transients
#: fall to the rounding floor (~1e-13 mV) within about 20 s.
MARGIN_S = 30.0
#: XQRS runs on a signal of at least this rate (records below it are upsampled, as ptbxl.detect_r_peaks does).
DETECT_FS = 300.0
#: A run of missing samples at least this long is a gap (a lead-off period): it can hide whole beats, so no beat
#: is reported inside one (see ``predict``).
GAP_S = 1.0

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Span:
    """One chunk: its core ``start:stop`` (samples it owns) and the wider ``read_start:read_stop`` it reads."""

    start: int
    stop: int
    read_start: int
    read_stop: int


def spans(n: int, core: int, margin: int, align: int = 1) -> Iterator[Span]:
    """Chunks covering ``0:n`` with cores of about ``core`` samples and ``margin`` samples of overlap; every
    boundary is a multiple of ``align`` (so a polyphase resampler keeps its phase from chunk to chunk)."""
    align = max(int(align), 1)
    core = max(-(-int(core) // align) * align, align)
    margin = -(-int(margin) // align) * align
    for start in range(0, n, core):
        stop = min(n, start + core)
        yield Span(start, stop, max(0, start - margin), min(n, stop + margin))


def _resampled_len(n: int, up: int, down: int) -> int:
    """Length of ``resample_poly``'s output for ``n`` input samples."""
    return -(-n * up // down)


# ---------------------------------------------------------------------------------------------- missing samples


@dataclass(frozen=True)
class MissingRuns:
    """The runs of missing (non-finite) samples of some channels of a record: ``runs[channel]`` is an (k, 2)
    array of ``start, stop`` sample indices, sorted."""

    n: int
    runs: dict[int, np.ndarray]

    def total(self, channels: list[int] | None = None) -> int:
        """Missing samples in ``channels`` (all scanned channels by default)."""
        keys = self.runs if channels is None else channels
        return int(sum(int((self.runs[c][:, 1] - self.runs[c][:, 0]).sum()) for c in keys))

    def gaps(self, channel: int, min_len: int) -> np.ndarray:
        """The runs of ``channel`` at least ``min_len`` samples long, (k, 2)."""
        r = self.runs[channel]
        return r[r[:, 1] - r[:, 0] >= min_len]


def missing_runs(head: Header, channels: list[int], *, chunk_s: float = CHUNK_S,
                 observe: Callable[[int, np.ndarray], None] | None = None) -> MissingRuns:
    """Scan the record a chunk at a time for its runs of missing samples in ``channels`` (merged across chunk
    borders): what a chunk needs to bridge a gap that runs past its ends exactly as the whole lead is bridged.
    ``observe(start, x)``, when given, sees each chunk's samples (``channels`` in that order) as they are read,
    so that other statistics of the record need no second pass over it. The same pass checks the channels' samples
    against their header's checksums (as :func:`ecg_data._wfdb_io.read_record` does on a whole record): another
    record's signal file of the same size, or a damaged one, is refused before any beat is classified."""
    n = head.n_samples
    starts: dict[int, list[int]] = {c: [] for c in channels}
    stops: dict[int, list[int]] = {c: [] for c in channels}
    sums = SpanChecksums(head, list(channels))
    for sp in spans(n, chunk_s * head.fs, 0):
        x = read_span(head, sp.start, sp.stop, list(channels), sums=sums)
        if observe is not None:
            observe(sp.start, x)
        bad = ~np.isfinite(x)
        if not bad.any():
            continue
        edges = np.diff(np.vstack([np.zeros((1, bad.shape[1]), np.int8), bad.astype(np.int8),
                                   np.zeros((1, bad.shape[1]), np.int8)]), axis=0)
        for j, c in enumerate(channels):
            s, e = np.flatnonzero(edges[:, j] == 1) + sp.start, np.flatnonzero(edges[:, j] == -1) + sp.start
            if len(s) and stops[c] and stops[c][-1] == s[0]:  # a run that goes on across the chunk border
                stops[c][-1] = int(e[0])
                s, e = s[1:], e[1:]
            starts[c].extend(s.tolist())
            stops[c].extend(e.tolist())
    sums.check()
    return MissingRuns(n, {c: np.array([starts[c], stops[c]], dtype=np.int64).T.reshape(-1, 2) for c in channels})


def _bridged(head: Header, x: np.ndarray, lo: int, channels: list[int], missing: MissingRuns,
             anchors: dict[tuple[int, int], float]) -> np.ndarray:
    """``x`` (``read_span(head, lo, ..., channels)``) with its missing samples filled as ``fill_nans`` fills the
    whole lead: linearly between the finite samples that bound each gap, read from outside ``x`` when the gap runs
    past its ends (kept in ``anchors``); nearest value at the record's ends; zeros for a lead with no sample."""
    out = np.array(x, dtype=np.float64, copy=True)
    hi = lo + out.shape[0]
    for j, c in enumerate(channels):
        col = out[:, j]
        bad = ~np.isfinite(col)
        if not bad.any():
            continue
        xp, fp = list(np.flatnonzero(~bad) + lo), list(col[~bad])
        runs = missing.runs[c]
        if bad[0]:  # the gap began before lo: its last finite sample before it
            start = int(runs[np.searchsorted(runs[:, 0], lo, side="right") - 1, 0])
            if start > 0:
                xp.insert(0, start - 1)
                fp.insert(0, _anchor(head, c, start - 1, anchors))
        if bad[-1]:  # the gap ends after hi: the first finite sample after it
            stop = int(runs[np.searchsorted(runs[:, 0], hi - 1, side="right") - 1, 1])
            if stop < missing.n:
                xp.append(stop)
                fp.append(_anchor(head, c, stop, anchors))
        if not xp:
            col[:] = 0.0
        else:
            col[bad] = np.interp(np.flatnonzero(bad) + lo, np.asarray(xp, dtype=np.int64), np.asarray(fp))
    return out


def _anchor(head: Header, channel: int, i: int, anchors: dict[tuple[int, int], float]) -> float:
    """Sample ``i`` of ``channel`` (a finite one bounding a gap), read once."""
    key = (channel, i)
    if key not in anchors:
        anchors[key] = float(read_span(head, i, i + 1, [channel])[0, 0])
    return anchors[key]


# ---------------------------------------------------------------------------------------------- QRS detection


class _PeakValues:
    """``sig_i[i]`` for the candidate peaks only: what XQRS's detection loop reads of its integrated signal."""

    def __init__(self, inds: np.ndarray, values: np.ndarray):
        self._inds, self._values = inds, values

    def __getitem__(self, i):
        return self._values[np.searchsorted(self._inds, i)]


def _greedy_peaks(cand: np.ndarray, radius: int) -> np.ndarray:
    """wfdb's ``find_local_peaks`` scan over the samples that equal their neighbourhood's maximum: the first
    candidate, then the first one at least ``radius`` after the last kept one, and so on."""
    out, nxt = [], -1
    while True:
        k = int(np.searchsorted(cand, nxt))
        if k >= len(cand):
            return np.asarray(out, dtype=np.int64)
        out.append(int(cand[k]))
        nxt = int(cand[k]) + radius


def _local_max_candidates(x: np.ndarray, radius: int, lo: int, hi: int) -> np.ndarray:
    """Indices in ``lo:hi`` of ``x`` where ``x[i] == max(x[i - radius : i + radius])`` (clipped at the ends)."""
    m = maximum_filter1d(x, size=2 * radius, mode="nearest")
    idx = np.flatnonzero(x[lo:hi] == m[lo:hi]) + lo
    return idx


def detect_r_peaks_chunked(head: Header, channel: int, *, chunk_s: float = CHUNK_S, margin_s: float = MARGIN_S,
                           missing: MissingRuns | None = None, progress: Progress | None = None) -> np.ndarray:
    """R peaks of one lead found with wfdb's XQRS, reading the record a chunk at a time.

    Same algorithm and settings as :func:`ecg_data.ptbxl.detect_r_peaks` on the whole (gap-bridged) lead: the
    filtering is done per chunk, the candidate peaks are collected, and XQRS's learning and adaptive detection
    loop (wfdb's own code) then run once over all of them, so its thresholds carry across chunk borders.
    ``missing`` (:func:`missing_runs` of the channel; scanned here when not given) bridges gaps as on the whole
    lead."""
    from wfdb.processing import XQRS
    from wfdb.processing.basic import get_filter_gain, normalize
    from wfdb.processing.qrs import ricker

    fs, n = head.fs, head.n_samples
    fs_d = fs if fs >= DETECT_FS else DETECT_FS
    up, down = _down(fs, fs_d)
    n_d = _resampled_len(n, up, down)
    xq = XQRS(sig=np.zeros(2), fs=fs_d)
    if xq.t_inspect_period:  # the T-wave check reads the filtered signal itself, which is not kept
        raise RuntimeError("XQRS T-wave inspection is not supported by the chunked detector")
    b, a = _signal.butter(2, [float(5) * 2 / fs_d, float(20) * 2 / fs_d], "pass")
    wavelet = ricker(xq.qrs_width, 4)
    xq.transform_gain = (get_filter_gain(b, a, np.mean([5, 20]), fs_d) * 2
                         * get_filter_gain(wavelet, [1], np.mean([5, 20]), fs_d) * 2)
    r, width = xq.qrs_radius, xq.qrs_width
    learn_wavelet = ricker(r * 2, 4)
    cand_i: list[np.ndarray] = []
    amp_i: list[np.ndarray] = []
    learn: list[tuple[int, bool, float]] = []  # (sig_f peak, looks like a QRS, sig_i there) until learning is settled
    learn_next = -1  # find_local_peaks' scan position over sig_f
    lo_sig, hi_sig, lo_i, hi_i = np.inf, -np.inf, np.inf, -np.inf
    margin = max(margin_s * fs, 4 * width * fs / fs_d)  # a peak's neighbourhood is always read
    missing = missing if missing is not None else missing_runs(head, [channel], chunk_s=chunk_s)
    anchors: dict[tuple[int, int], float] = {}
    for sp in spans(n, chunk_s * fs, margin, down):
        x = read_span(head, sp.read_start, sp.read_stop, [channel])
        x = _bridged(head, x, sp.read_start, [channel], missing, anchors)[:, 0]
        if fs_d != fs:
            x = resample(x, fs, fs_d)
        off = sp.read_start * up // down
        start, stop = sp.start * up // down, _resampled_len(sp.stop, up, down)
        core = slice(start - off, stop - off)
        lo_sig, hi_sig = min(lo_sig, float(x[core].min())), max(hi_sig, float(x[core].max()))
        sig_f = _signal.filtfilt(b, a, x, axis=0)
        sig_i = _signal.filtfilt(wavelet, [1], sig_f, axis=0) ** 2
        lo_i, hi_i = min(lo_i, float(sig_i[core].min())), max(hi_i, float(sig_i[core].max()))
        c = _local_max_candidates(sig_i, r, core.start, core.stop)
        cand_i.append(c + off)
        amp_i.append(sig_i[c])
        if not _learning_settled(learn, xq.rr_min):
            for p in _greedy_from(_local_max_candidates(sig_f, r, core.start, core.stop) + off, r, learn_next):
                learn_next = p + r
                loc = p - off
                if width < p <= n_d - width:  # the learning loop's range (its last peak is checked below)
                    seg = normalize(sig_f[loc - r:loc + r])
                    learn.append((p, bool(np.correlate(seg, learn_wavelet) > 0.6), sig_i[loc]))
                elif p > n_d - width:
                    break
        if progress:
            progress("finding beats", sp.stop, n)
    if lo_sig == hi_sig or lo_i == hi_i:  # a flat lead: XQRS skips detection / finds no local peak
        return np.zeros(0, dtype=np.int64)
    cand = np.concatenate(cand_i) if cand_i else np.zeros(0, dtype=np.int64)
    amps = np.concatenate(amp_i) if amp_i else np.zeros(0)
    peaks = _greedy_peaks(cand, r)
    xq.verbose, xq.sampfrom = False, 0
    xq.peak_inds_i = peaks
    xq.n_peaks_i = len(peaks)
    xq.sig_i = _PeakValues(peaks, amps[np.searchsorted(cand, peaks)])
    _learn_init_params(xq, learn)
    xq._run_detection()
    q = np.asarray(xq.qrs_inds, dtype=np.int64)
    if fs_d == fs:
        return q
    found = np.unique(resampled_positions(q, fs, fs_d, back=True))
    return found[(found >= 0) & (found < n)]


def _greedy_from(cand: np.ndarray, radius: int, nxt: int) -> Iterator[int]:
    """:func:`_greedy_peaks` over one chunk's candidates, continuing from scan position ``nxt``."""
    k = int(np.searchsorted(cand, nxt))
    while k < len(cand):
        p = int(cand[k])
        yield p
        k = int(np.searchsorted(cand, p + radius))


def _learning_settled(learn: list[tuple[int, bool, float]], rr_min: float) -> bool:
    """Whether XQRS's learning (8 QRS-like peaks) already has its 8 beats and one more peak after them (so that
    the loop's exclusive end, the record's last peak, cannot matter): later chunks need not be looked at."""
    found, last = 0, None
    for k, (p, beat, _) in enumerate(learn):
        if beat and (last is None or p - last > rr_min):
            found, last = found + 1, p
            if found == 8:
                return k + 1 < len(learn)
    return False


def _learn_init_params(xq, learn: list[tuple[int, bool, float]]) -> None:
    """XQRS's ``_learn_init_params`` on the collected learning peaks (same arithmetic, same fallbacks)."""
    if not learn:
        xq._set_default_init_params()
        return
    last_qrs_ind = -xq.rr_max
    qrs_inds, qrs_amps, noise_amps = [], [], []
    # the learning loop stops before the record's last eligible peak: that peak only matters when 8 beats were
    # not found before it, i.e. when the whole record was collected
    for p, beat, amp in learn if _learning_settled(learn, xq.rr_min) else learn[:-1]:
        if beat and p - last_qrs_ind > xq.rr_min:
            last_qrs_ind = p
            qrs_inds.append(p)
            qrs_amps.append(amp)
        else:
            noise_amps.append(amp)
        if len(qrs_inds) == 8:
            break
    if len(qrs_inds) != 8:
        xq._set_default_init_params()
        return
    qrs_amp = np.mean(qrs_amps)
    noise_amp = np.mean(noise_amps) if noise_amps else qrs_amp / 10
    rr_intervals = np.diff(qrs_inds)
    rr_intervals = rr_intervals[rr_intervals < xq.rr_max]
    rr_recent = np.mean(rr_intervals) if rr_intervals.any() else xq.rr_init
    xq._set_init_params(qrs_amp_recent=qrs_amp, noise_amp_recent=noise_amp, rr_recent=rr_recent,
                        last_qrs_ind=min(0, qrs_inds[0] - xq.rr_min - 1))
    xq.learned_init_params = True


# ---------------------------------------------------------------------------------------------- beat windows


def beat_windows_chunked(head: Header, channels: list[int], beats: np.ndarray, *, fs: float, length: int,
                         low: float = LOW_CUT, high: float = HIGH_CUT, chunk_s: float = CHUNK_S, margin_s: float = MARGIN_S, missing: MissingRuns | None = None,
                         progress: Progress | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Per chunk: (positions into ``beats``, their normalised windows).

    The windows are :func:`ecg_data.preprocess.beats_from_signal`'s (band-pass, resample to ``fs``, ``length``
    samples centred on the beat, z-scored) for the ``beats`` (sample indices at the record's rate, sorted; each
    must have a full window: see :func:`full_window`), computed on one chunk at a time. ``missing`` (:func:`missing_runs` of ``channels``, scanned
    here when not given) bridges gaps as on the whole record."""
    from .preprocess import normalise

    fs_in, n = head.fs, head.n_samples
    up, down = _down(fs_in, fs)
    half = length // 2
    scaled = resampled_positions(beats, fs_in, fs)
    read = sorted(set(channels))
    pos = [read.index(c) for c in channels]
    margin = max(margin_s * fs_in, (half + 1) * fs_in / fs + 64 * max(up, down))
    missing = missing if missing is not None else missing_runs(head, list(channels), chunk_s=chunk_s)
    anchors: dict[tuple[int, int], float] = {}
    for sp in spans(n, chunk_s * fs_in, margin, down):
        x = read_span(head, sp.read_start, sp.read_stop, read)
        lo, hi = np.searchsorted(beats, [sp.start, sp.stop])
        idx = np.arange(lo, hi)
        if len(idx):
            sig = _bridged(head, x[:, pos], sp.read_start, channels, missing, anchors)
            res = resample(bandpass(sig, fs_in, low, high), fs_in, fs)
            starts = scaled[idx] - half - sp.read_start * up // down
            if starts.min() < 0 or starts.max() + length > len(res):  # the margin covers every window
                raise RuntimeError(f"chunk {sp} does not hold the windows of its beats")
            windows = normalise(res[starts[:, None] + np.arange(length)[None, :]])
        else:
            windows = np.zeros((0, length, len(channels)), dtype=np.float32)
        if progress:
            progress("classifying beats", sp.stop, n)
        yield idx, windows


def full_window(beats: np.ndarray, fs_in: float, n: int, *, fs: float, length: int) -> np.ndarray:
    """Mask of the beats whose window at ``fs`` lies inside the record (``extract_windows``'s rule)."""
    up, down = _down(fs_in, fs)
    starts = resampled_positions(beats, fs_in, fs) - length // 2
    return (starts >= 0) & (starts + length <= _resampled_len(n, up, down))
