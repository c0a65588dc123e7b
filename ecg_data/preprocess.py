"""Signal preprocessing shared by every source (and by ``predict`` on the Pi): band-pass filter,
resampling, beat windows around R peaks, per-window normalisation and RR-interval rhythm features.

Only numpy and scipy: this module is on the TensorFlow-free predict path.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from scipy import signal as _signal

#: Number of RR features per beat (see :func:`rr_features`).
N_RR_FEATURES = 14
#: The windows' central part compared between neighbouring beats, seconds either side of the beat.
SIMILARITY_S = 0.25
#: Each beat is compared with this many beats before it, and the likest counts (a PVC every other beat, or every
#: third, is like the one before it).
SIMILARITY_LAGS = 3
#: The band-pass every record source gets before its windows are cut (Hz): baseline wander below, EMG and mains above.
#: An exported model's sidecar names it (``filter``), and predict runs it on a record.
LOW_CUT, HIGH_CUT = 0.5, 40.0
#: The band-pass's high cut-off is capped at this fraction of the sampling rate (just under Nyquist's 0.5).
HIGH_CUT_MAX = 0.45


def bandpass(x: np.ndarray, fs: float, low: float = LOW_CUT, high: float = HIGH_CUT, order: int = 3) -> np.ndarray:
    """Zero-phase Butterworth band-pass along the first axis; NaNs are interpolated first."""
    fs = _check_rate("fs", fs)
    x = np.asarray(x, dtype=np.float64)
    x = fill_nans(x)
    high = min(high, HIGH_CUT_MAX * fs)
    sos = _signal.butter(order, [low, high], btype="bandpass", fs=fs, output="sos")
    padlen = min(x.shape[0] - 1, 3 * (2 * len(sos) + 1))
    if x.shape[0] < 2:
        return x
    return _signal.sosfiltfilt(sos, x, axis=0, padlen=max(padlen, 0))


def _check_rate(name: str, fs: float) -> float:
    """``fs`` as a float; TypeError (not a number) or ValueError (not a finite rate above 0 Hz) naming ``name``:
    SciPy's errors did not name it. A 0-d array (what an .npz gives back) is a number."""
    if isinstance(fs, np.ndarray) and fs.ndim == 0:
        fs = fs.item()
    if isinstance(fs, (bool, np.bool_)) or not isinstance(fs, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a sampling rate in Hz, not {fs!r}")
    if not 0 < fs < np.inf:
        raise ValueError(f"{name} must be a sampling rate above 0 Hz, not {fs!r}")
    return float(fs)


def fill_nans(x: np.ndarray) -> np.ndarray:
    """Linear interpolation over NaN/inf samples per channel (all-NaN channels become zeros)."""
    x = np.array(x, dtype=np.float64, copy=True)
    if x.size == 0:  # an empty record (0 samples, or 0 channels): nothing to fill
        return x
    flat = x.reshape(x.shape[0], -1)
    idx = np.arange(flat.shape[0])
    for c in range(flat.shape[1]):
        col = flat[:, c]
        bad = ~np.isfinite(col)
        if bad.all():
            col[:] = 0.0
        elif bad.any():
            col[bad] = np.interp(idx[bad], idx[~bad], col[~bad])
    return flat.reshape(x.shape)


def resample_ratio(fs_in: float, fs_out: float) -> tuple[int, int]:
    """(up, down) of :func:`resample` from ``fs_in`` to ``fs_out`` Hz (1, 1 when equal): chunked reading cuts a
    record on multiples of ``down`` so each chunk's resampled samples are the whole record's."""
    if fs_in == fs_out:
        return 1, 1
    frac = Fraction(fs_out / fs_in).limit_denominator(1000)
    return frac.numerator, frac.denominator


def resampled_positions(samples: np.ndarray, fs_in: float, fs_out: float, *, back: bool = False) -> np.ndarray:
    """Sample indices at ``fs_in`` as whole indices into ``resample(x, fs_in, fs_out)`` (``back``: indices into that
    resampled signal as indices at ``fs_in``), by the ratio :func:`resample` applies, :func:`resample_ratio`'s
    fraction, not ``fs_out / fs_in``: for a rate that fraction only approximates (359.8 Hz to 360), the beat
    windows drifted off their R peaks, by 289 samples at the end of a 30-minute record."""
    up, down = resample_ratio(fs_in, fs_out)
    if back:
        up, down = down, up
    return np.round(np.asarray(samples, dtype=np.int64) * up / down).astype(np.int64)


def resample(x: np.ndarray, fs_in: float, fs_out: float, *, padtype: str = "constant") -> np.ndarray:
    """Polyphase resampling along the first axis from ``fs_in`` to ``fs_out`` Hz. ``padtype`` (scipy's
    ``resample_poly``) is what the filter assumes beyond both ends: zeros by default (a whole record, whose ends
    are cut off anyway); a short piece resampled alone keeps its ends with "antireflect"."""
    fs_in, fs_out = _check_rate("fs_in", fs_in), _check_rate("fs_out", fs_out)
    if fs_in == fs_out:
        return np.asarray(x, dtype=np.float64)
    up, down = resample_ratio(fs_in, fs_out)
    x = np.asarray(x, dtype=np.float64)
    if len(x) < 2:  # SciPy 1.17's "antireflect" on one sample killed the process (SIGFPE): nothing to continue
        padtype = "constant"
    return _signal.resample_poly(x, up, down, axis=0, padtype=padtype)


def normalise(windows: np.ndarray) -> np.ndarray:
    """Per-window z-score over time (and channels); flat windows stay zero instead of dividing by 0.

    Missing samples (NaN, inf) are left out of a window's mean and spread and come out as 0, so the
    result is always finite (a window with no finite sample is all zeros)."""
    w = np.asarray(windows, dtype=np.float64)
    axes = tuple(range(1, w.ndim))
    finite = np.isfinite(w)
    if finite.all():
        mean = w.mean(axis=axes, keepdims=True)
        std = w.std(axis=axes, keepdims=True)
        out = (w - mean) / np.where(std > 1e-8, std, 1.0)
    else:
        count = np.maximum(finite.sum(axis=axes, keepdims=True), 1)
        mean = np.where(finite, w, 0.0).sum(axis=axes, keepdims=True) / count
        centred = np.where(finite, w - np.where(finite, mean, 0.0), 0.0)
        std = np.sqrt((centred ** 2).sum(axis=axes, keepdims=True) / count)
        out = centred / np.where(std > 1e-8, std, 1.0)
    return np.clip(out, -20, 20).astype(np.float32)


def extract_windows(x: np.ndarray, peaks: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows of ``length`` samples centred on each R peak; returns (windows, mask of kept peaks).

    Peaks whose window would run past either end of the signal are dropped (mask False).
    """
    x = np.asarray(x)
    if x.ndim == 1:
        x = x[:, None]
    peaks = np.asarray(peaks, dtype=np.int64)
    half = length // 2
    starts = peaks - half
    keep = (starts >= 0) & (starts + length <= x.shape[0])
    idx = starts[keep][:, None] + np.arange(length)[None, :]
    return x[idx], keep


def rr_features(peaks: np.ndarray, fs: float, local: int = 8, wide: int = 32) -> np.ndarray:
    """Rhythm context per beat, shape (n, 14) float32.

    Columns 0-8: pre-RR and post-RR in seconds; each divided by the mean of the previous ``local`` RR
    intervals (the recent rhythm); each divided by the median RR of the whole record (the patient's usual
    rhythm); the RR before the previous beat and the RR after the next beat, both over the record's median
    (the neighbours' rhythm); and pre-RR / post-RR. Columns 9-10: pre/post-RR over the mean of the previous
    ``wide`` intervals (a slower reference). Columns 11-13: how irregular the rhythm is -- the spread of
    successive RR differences over the mean RR in the ``local`` and ``wide`` beats on either side of the beat,
    and the median absolute successive difference over the median RR of the whole record.

    A premature beat has a short pre-RR and a long post-RR relative to the patient's rhythm, which is what
    cardiologists read; the ratios make the features independent of the heart rate, and the neighbours'
    intervals tell an isolated premature beat from a run or a rhythm change. In an irregular rhythm (atrial
    fibrillation) a short interval is not a premature beat, which the irregularity columns let the model
    learn: on MIT-BIH they raised the DS1 out-of-fold and DS2 ROC-AUC of a fixed config, and above all the
    detection of S beats (docs/RESULTS.md, section 1).
    """
    peaks = np.asarray(peaks, dtype=np.float64)
    n = len(peaks)
    if n < 2:
        out = np.ones((n, N_RR_FEATURES), dtype=np.float32)
        out[:, 11:] = 0.0
        return out
    rr = np.diff(peaks) / fs
    med = float(np.median(rr))
    rec = med if med > 1e-6 else 1.0
    pre = np.concatenate([[med], rr])
    post = np.concatenate([rr, [med]])
    loc, loc_wide = _trailing_mean(pre, local, rec), _trailing_mean(pre, wide, rec)
    prev_pre = np.concatenate([[med], pre[:-1]])  # RR between the two beats before this one
    next_post = np.concatenate([post[1:], [med]])  # RR between the two beats after it
    ratio = pre / np.where(post > 1e-6, post, 1e-6)
    rec_irr = float(np.median(np.abs(np.diff(rr)))) / rec if len(rr) > 1 else 0.0
    feats = np.stack([pre, post, pre / loc, post / loc, pre / rec, post / rec, prev_pre / rec, next_post / rec,
                      ratio, pre / loc_wide, post / loc_wide, _irregularity(pre, local), _irregularity(pre, wide),
                      np.full(n, rec_irr)], axis=1)
    return np.clip(feats, 0.0, 10.0).astype(np.float32)


def _trailing_mean(pre: np.ndarray, k: int, fallback: float) -> np.ndarray:
    """Mean of the ``k`` RR intervals before each beat's own (the record median for the first beat)."""
    n = len(pre)
    csum = np.concatenate([[0.0], np.cumsum(pre)])
    i = np.arange(n)
    lo = np.maximum(i - k, 0)
    loc = np.where(i > 0, (csum[i] - csum[lo]) / np.maximum(i - lo, 1), fallback)
    return np.where(loc > 1e-6, loc, fallback)


def _irregularity(pre: np.ndarray, k: int) -> np.ndarray:
    """Standard deviation of successive RR differences over the mean RR, in the ``k`` beats on either side
    (0 where the window holds fewer than three intervals)."""
    n = len(pre)
    i = np.arange(n)
    lo, hi = np.maximum(i - k, 0), np.minimum(i + k + 1, n)  # window pre[lo:hi]
    d = np.diff(pre)
    c1 = np.concatenate([[0.0], np.cumsum(d)])
    c2 = np.concatenate([[0.0], np.cumsum(d * d)])
    cp = np.concatenate([[0.0], np.cumsum(pre)])
    m = hi - lo - 1  # differences inside the window: d[lo:hi-1]
    safe = np.maximum(m, 1)
    s1, s2 = c1[hi - 1] - c1[lo], c2[hi - 1] - c2[lo]
    std = np.sqrt(np.maximum(s2 / safe - (s1 / safe) ** 2, 0.0))
    mean = (cp[hi] - cp[lo]) / np.maximum(hi - lo, 1)
    return np.where((hi - lo > 2) & (mean > 1e-6), std / np.where(mean > 1e-6, mean, 1.0), 0.0)


def beats_from_signal(
    x: np.ndarray, fs_in: float, peaks: np.ndarray, *, fs: float, length: int,
    low: float = LOW_CUT, high: float = HIGH_CUT,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Full pipeline for one record: filter, resample, window around peaks, normalise, RR features.

    ``x`` is (samples,) or (samples, channels) at ``fs_in``; ``peaks`` are sample indices at ``fs_in``.
    Returns (windows (n, length, channels) float32, rr (n, N_RR_FEATURES) float32, kept-mask over ``peaks``).
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    peaks = np.asarray(peaks, dtype=np.int64)
    filtered = bandpass(x, fs_in, low, high)
    res = resample(filtered, fs_in, fs)
    scaled = resampled_positions(peaks, fs_in, fs)
    rr = rr_features(peaks, fs_in)
    windows, keep = extract_windows(res, scaled, length)
    return normalise(windows), rr[keep], keep


def neighbour_similarity(windows: np.ndarray, fs: float, before: np.ndarray | None = None
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Each beat window's highest correlation, over its central +-:data:`SIMILARITY_S` (all of a shorter window), with the
    :data:`SIMILARITY_LAGS` windows before it (NaN for a first beat), and the last centres to pass as ``before``
    to the next call (a record read chunk by chunk): beats of one heart look alike from one beat to the next;
    windows cut from noise, or at samples that are not beats, do not.

    ``windows``: (beats, length) of one lead, in beat order."""
    w = np.asarray(windows, dtype=np.float64)
    if not len(w):
        return np.zeros(0), before if before is not None else np.zeros((0, 0))
    mid, half = w.shape[1] // 2, int(round(SIMILARITY_S * fs))
    c = w[:, max(mid - half, 0):mid + half]  # a window shorter than 2 x half: all of it (a negative start wrapped)
    c = c - c.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(c, axis=1)
    c = c / np.where(norm > 0, norm, 1.0)[:, None]
    held = len(before) if before is not None else 0
    allc = c if not held else np.vstack([before, c])
    best = np.full(len(c), np.nan)
    for lag in range(1, SIMILARITY_LAGS + 1):
        i = np.arange(held, len(allc))
        ok = i - lag >= 0
        r = (allc[i[ok]] * allc[i[ok] - lag]).sum(axis=1)
        best[ok] = np.fmax(best[ok], r)
    return best, allc[-SIMILARITY_LAGS:]
