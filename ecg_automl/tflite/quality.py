"""Does the input of ``predict`` look like an ECG the model can be trusted on? A few plain checks, run on the
chunks ``predict`` reads anyway (so a 24-hour record is never held whole):

* **flat**: seconds of the leads read in which the signal spans less than :data:`FLAT_MV` (a lead that is off,
  a dead or saturated amplifier, or a record whose units are a thousandfold too small);
* **clipped**: the share of a lead's samples that sit exactly at its highest or lowest value (an ADC rail);
* **heart rate**: the median rate of the beats over the record, outside :data:`HR_RANGE` bpm (a sampling rate in
  the header that is not the data's, or beats found in something that is no ECG), and the longest stretch
  without a beat (no gap of missing samples in it);
* **beat similarity**: the median over the beats of each beat's window's highest correlation with the 3 beats
  before it, over the record and per minute: beats of one heart look alike from one beat to the next,
  detections in noise do not;
* **polarity**: the share of beats whose QRS points down, for a one-lead MIT-BIH (MLII) model reading MLII: its
  training records' QRS points up (no MIT-BIH record has more than 81% of its beats down; an inverted one 100%).

Only numpy: this module is on the TensorFlow-free predict path.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ecg_data.preprocess import neighbour_similarity

#: A second of ECG spans at least this (mV) peak to peak; less is a flat line.
FLAT_MV = 0.02
#: Seconds per block of the flat check.
FLAT_BLOCK_S = 1.0
#: Range of a heart's rate sustained over a whole record (bpm): the median rate of the beats found outside it
#: points at a sampling rate in the header that is not the data's (360 Hz data labelled 100 Hz reads ~21 bpm).
HR_RANGE = (25.0, 200.0)
#: Seconds either side of a beat in which its QRS's largest deflection is looked for (polarity).
QRS_HALF_S = 0.06


@dataclass
class LeadScan:
    """Accumulates the flat and clipped counts of some leads over the chunks of a record (``__call__(start, x)``
    with ``x`` the chunk's samples, (n, leads)): 1-second blocks aligned on the record, carried across chunks."""

    fs: float
    names: list[str]
    block: int = 0
    n: int = 0
    flat_blocks: list[int] = field(default_factory=list)
    longest_flat: list[int] = field(default_factory=list)  # blocks in the longest run of flat blocks
    run_flat: list[int] = field(default_factory=list)
    hi: list[float] = field(default_factory=list)
    lo: list[float] = field(default_factory=list)
    at_hi: list[int] = field(default_factory=list)
    at_lo: list[int] = field(default_factory=list)
    finite: list[int] = field(default_factory=list)
    _rest: np.ndarray | None = None

    def __post_init__(self):
        k = len(self.names)
        self.block = max(int(round(FLAT_BLOCK_S * self.fs)), 1)
        self.flat_blocks, self.longest_flat, self.run_flat = [0] * k, [0] * k, [0] * k
        self.hi, self.lo = [-np.inf] * k, [np.inf] * k
        self.at_hi, self.at_lo, self.finite = [0] * k, [0] * k, [0] * k

    def __call__(self, start: int, x: np.ndarray) -> None:
        """Take the chunk ``x`` (samples x leads) that starts at sample ``start``."""
        x = np.asarray(x, dtype=np.float64)
        self.n += len(x)
        for j in range(x.shape[1]):
            col = x[:, j][np.isfinite(x[:, j])]
            if not len(col):
                continue
            self.finite[j] += len(col)
            for ext, at, better in ((self.hi, self.at_hi, np.max), (self.lo, self.at_lo, np.min)):
                v = float(better(col))
                if v == ext[j]:
                    at[j] += int((col == v).sum())
                elif better([v, ext[j]]) == v:
                    ext[j], at[j] = v, int((col == v).sum())
        x = x if self._rest is None else np.vstack([self._rest, x])
        whole = len(x) // self.block * self.block
        self._blocks(x[:whole])
        self._rest = x[whole:]

    def _blocks(self, x: np.ndarray) -> None:
        if not len(x):
            return
        b = x.reshape(-1, self.block, x.shape[1])
        b = np.where(np.isfinite(b), b, np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a block with no finite sample: a gap, reported as such
            span = np.nanmax(b, axis=1) - np.nanmin(b, axis=1)
        flat = np.isfinite(span) & (span < FLAT_MV)
        for j in range(x.shape[1]):
            for f in flat[:, j]:
                self.run_flat[j] = self.run_flat[j] + 1 if f else 0
                self.longest_flat[j] = max(self.longest_flat[j], self.run_flat[j])
            self.flat_blocks[j] += int(flat[:, j].sum())

    def finish(self) -> None:
        """Count the record's last, partial block."""
        if self._rest is not None and len(self._rest) >= self.block // 2:
            pad = self.block - len(self._rest)
            self._blocks(np.vstack([self._rest, np.repeat(self._rest[-1:], pad, axis=0)]))
        self._rest = None

    def stats(self) -> dict[str, Any]:
        """Per lead: flat time, clipping and the amplitude range the scan found, once every chunk is in."""
        self.finish()
        out = {}
        for j, name in enumerate(self.names):
            n = max(self.finite[j], 1)
            span = self.hi[j] - self.lo[j] if self.finite[j] else 0.0
            out[name] = {"flat_s": self.flat_blocks[j] * self.block / self.fs,
                         "longest_flat_s": self.longest_flat[j] * self.block / self.fs,
                         "clipped_fraction": (self.at_hi[j] + self.at_lo[j]) / n if span > 0 else 0.0,
                         "clipped_s": (self.at_hi[j] + self.at_lo[j]) / self.fs if span > 0 else 0.0,
                         "range_mv": [self.lo[j], self.hi[j]] if self.finite[j] else None}
        return out


@dataclass
class BeatScan:
    """Per-beat shape statistics from the model's normalised windows, fed in beat order (``__call__(windows)``,
    (beats, length) of one lead): the highest correlation of its centre with the
    :data:`ecg_data.preprocess.SIMILARITY_LAGS` beats before it, and the sign of the QRS."""

    fs: float
    corr: list[np.ndarray] = field(default_factory=list)
    negative: list[np.ndarray] = field(default_factory=list)
    _prev: np.ndarray | None = None

    def __call__(self, w: np.ndarray) -> None:
        """Take the next beat windows ``w`` (beats x samples) in record order."""
        if not len(w):
            return
        best, self._prev = neighbour_similarity(w, self.fs, self._prev)
        self.corr.append(best)
        mid = w.shape[1] // 2
        q = int(round(QRS_HALF_S * self.fs))
        qrs = np.asarray(w[:, mid - q:mid + q + 1], dtype=np.float64)
        base = np.median(w, axis=1, keepdims=True)
        self.negative.append((qrs - base).min(axis=1) + (qrs - base).max(axis=1) < 0)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Every beat's best similarity to its neighbours and whether its QRS deflects mostly downwards, in record order."""
        corr = np.concatenate(self.corr) if self.corr else np.zeros(0)
        neg = np.concatenate(self.negative) if self.negative else np.zeros(0, dtype=bool)
        return corr, neg


#: Warn when a lead is flat for at least this share of the record, or this many seconds in one run.
FLAT_SHARE, FLAT_RUN_S = 0.10, 10.0
#: Warn when at least this share of a lead's samples, and this many seconds of them, sit at its highest or lowest
#: value (a natural extreme is a sample or two; a 10 s record that ends flat at its lowest value is not clipped).
CLIPPED_SHARE, CLIPPED_MIN_S = 0.01, 1.0
#: Warn when no beat is found for this long (seconds) with signal present.
NO_BEAT_S = 10.0
#: Warn when neighbouring beats correlate less than this (median) over the record, or over a minute.
SIMILARITY_MIN = 0.5
#: A minute is judged on its similarity when it holds at least this many beats.
MINUTE_BEATS = 10
#: Warn when at least this share of the beats have a QRS that points down (a one-lead MLII or II model).
NEGATIVE_SHARE = 0.95


def _minutes(times_s: np.ndarray, values: np.ndarray) -> list[tuple[float, float]]:
    """(start second, median) of ``values`` per whole minute of ``times_s`` holding :data:`MINUTE_BEATS` of them."""
    ok = np.isfinite(values)
    times_s, values = times_s[ok], values[ok]
    if not len(values):
        return []
    minute = (times_s // 60).astype(np.int64)
    out = []
    for m in np.unique(minute):
        v = values[minute == m]
        if len(v) >= MINUTE_BEATS:
            out.append((60.0 * m, float(np.median(v))))
    return out


def _gap_samples_before(t: np.ndarray, gaps: np.ndarray) -> np.ndarray:
    """Samples of ``gaps`` (``start, stop`` rows, sorted, disjoint) that lie before each of ``t``."""
    if not len(gaps):
        return np.zeros(len(t))
    xp = np.asarray(gaps, dtype=np.float64).ravel()  # start0, stop0, start1, ...: the count grows inside each run
    fp = np.concatenate([[0.0], np.cumsum(gaps[:, 1] - gaps[:, 0])]).repeat(2)[1:-1]
    return np.interp(t, xp, fp)


def assess(leads: dict[str, dict[str, Any]], *, fs: float, n_samples: int, beats: np.ndarray, rhythm_breaks: np.ndarray,
           gaps: np.ndarray, classified: np.ndarray, corr: np.ndarray, negative: np.ndarray,
           polarity_lead: str | None) -> tuple[dict[str, Any], list[str]]:
    """The record's signal-quality figures and the warnings they call for.

    ``leads``: :meth:`LeadScan.stats`; ``beats``: every beat found (or annotated), sorted, at the record's rate;
    ``rhythm_breaks``: indices into ``beats`` whose interval to the beat before holds a gap (not counted as a
    rate); ``gaps``: the detection lead's gaps (``start, stop`` rows, sorted), whose seconds no stretch without
    a beat counts; ``classified``: the classified beats' samples in the
    order of ``corr`` and ``negative`` (:class:`BeatScan`); ``polarity_lead``: the lead the model was trained on
    when its QRS points up in most people (None: no polarity check)."""
    dur = n_samples / fs
    warn: list[str] = []
    q: dict[str, Any] = {"leads": leads}
    for name, s in leads.items():
        if s["flat_s"] >= FLAT_SHARE * dur or s["longest_flat_s"] >= FLAT_RUN_S:
            warn.append(f"lead {name} is flat (spans under {FLAT_MV:g} mV per second) for {s['flat_s']:.0f} s of the "
                        f"record's {dur:.0f} s (the longest run {s['longest_flat_s']:.0f} s): lead off, a dead or "
                        f"saturated input, or signal units a thousandfold too small")
        if s["clipped_fraction"] >= CLIPPED_SHARE and s["clipped_s"] >= CLIPPED_MIN_S:
            lo, hi = s["range_mv"]
            warn.append(f"{100 * s['clipped_fraction']:.1f}% of lead {name}'s samples sit exactly at its lowest or "
                        f"highest value ({lo:g} / {hi:g}): the signal looks clipped (an ADC or amplifier rail)")
    rr = np.diff(beats) / fs
    if len(rhythm_breaks):
        rr = np.delete(rr, np.asarray(rhythm_breaks) - 1)
    if len(rr):
        hr = 60.0 / float(np.median(rr))
        q["median_heart_rate_bpm"] = hr
        if not HR_RANGE[0] <= hr <= HR_RANGE[1]:
            warn.append(f"the median heart rate of the beats found is {hr:.0f} bpm, outside the {HR_RANGE[0]:g}-"
                        f"{HR_RANGE[1]:g} bpm a heart keeps up over a record: is the header's sampling rate "
                        f"({fs:g} Hz) the data's, and is this an ECG?")
    edges = np.concatenate([[0], beats, [n_samples]]).astype(np.float64)
    stretches = (np.diff(edges) - np.diff(_gap_samples_before(edges, gaps))) / fs  # a gap is reported as a gap
    k = int(np.argmax(stretches))
    q["longest_without_beat_s"] = float(stretches[k])
    if stretches[k] >= NO_BEAT_S:
        at = 0.0 if k == 0 else beats[k - 1] / fs
        warn.append(f"the record has no beat for {stretches[k]:.0f} s (from {at:.0f} s) with no gap there: a pause, "
                    f"noise, a rhythm without beats (flutter, fibrillation) or beats the detector does not see (wide "
                    f"ventricular ones, say); nothing there is classified")
    sim = float(np.nanmedian(corr)) if np.isfinite(corr).any() else None
    q["beat_similarity"] = sim
    if sim is not None and sim < SIMILARITY_MIN:
        warn.append(f"neighbouring beats hardly look alike (median correlation {sim:.2f}, under {SIMILARITY_MIN:g}): "
                    f"the beats were found in noise or in something that is no ECG, so their classes mean little")
    else:
        low = [m for m, v in _minutes(classified / fs, corr) if v < SIMILARITY_MIN]
        q["low_similarity_minutes"] = len(low)
        if low:
            warn.append(f"in {len(low)} minute(s) of the record (the first at {low[0]:.0f} s) neighbouring beats hardly "
                        f"look alike (median correlation under {SIMILARITY_MIN:g}): noise there, whose beats "
                        f"may be misread")
    if len(negative):
        q["negative_qrs_fraction"] = float(np.mean(negative))
        if polarity_lead and np.mean(negative) >= NEGATIVE_SHARE:
            warn.append(f"the QRS points down in {100 * np.mean(negative):.0f}% of the beats, while it points up "
                        f"in lead {polarity_lead} of the records the model was trained on: inverted signal or "
                        f"electrodes swapped?")
    return q, warn
