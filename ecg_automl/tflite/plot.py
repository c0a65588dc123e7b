"""``predict --plot``: a record's per-beat abnormal probability and abnormal burden over time, as a picture.

matplotlib reaches the base (Raspberry Pi) install only through wfdb's requirements; where it is missing,
:func:`require_matplotlib` says how to get it, and is called before the prediction runs. This module imports matplotlib only inside its functions.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

#: File types ``--plot`` writes (matplotlib's Agg backend picks the format from the suffix).
PLOT_SUFFIXES = (".png", ".svg", ".pdf")
#: Records longer than this (seconds) get an hours:minutes axis and 5-minute burden windows, shorter ones 30 s (5 s
#: for records of two minutes or less: :func:`burden_window_s`).
LONG_RECORD_S = 3600.0

_FLAGGED, _NORMAL, _REFERENCE, _MISSED, _GAP = "#d62728", "#7f9cbf", "#222222", "#ff9f1c", "#bbbbbb"


class PlotUnavailable(ImportError):
    """matplotlib cannot be imported: ``--plot`` needs it (the ``plot`` extra installs it)."""


def require_matplotlib() -> None:
    """Fail with a one-line install hint when matplotlib is missing, before a long prediction is run for nothing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        from ..install import install_hint

        raise PlotUnavailable(f"--plot needs matplotlib, which this install lacks ({exc}): "
                              f"{install_hint('plot', 'matplotlib')}") from None


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def burden_window_s(duration_s: float) -> float:
    """The abnormal-burden window for a record this long: 5 min over an hour (a Holter), 30 s over two minutes, else
    5 s (a 10 s PTB-XL record in one 30 s window was one bar as wide as the plot)."""
    return 300.0 if duration_s > LONG_RECORD_S else 30.0 if duration_s > 120.0 else 5.0


def _time_axis(ax, duration_s: float) -> str:
    """Ticks on ``ax`` at round times, labelled h:mm for a long record and m:ss otherwise; returns the axis label."""
    from matplotlib.ticker import FuncFormatter, MultipleLocator

    long = duration_s > LONG_RECORD_S
    steps = (600, 1200, 1800, 3600, 7200, 10800, 21600) if long else (1, 2, 5, 10, 30, 60, 120, 300, 600, 1200)
    step = next((s for s in steps if duration_s / s <= 12), steps[-1])
    ax.xaxis.set_major_locator(MultipleLocator(step))
    if long:
        ax.xaxis.set_major_formatter(FuncFormatter(lambda t, _: f"{int(t // 3600)}:{int(t % 3600 // 60):02d}"))
        return "time (h:mm)"
    ax.xaxis.set_major_formatter(FuncFormatter(lambda t, _: f"{int(t // 60)}:{int(t % 60):02d}"))
    return "time (min:s)"


def _burden(t: np.ndarray, flags: np.ndarray, window: float, n_windows: int) -> tuple[np.ndarray, np.ndarray]:
    """Per window of ``window`` seconds: the percentage of its beats that ``flags`` marks (NaN with no beat) and
    its beat count."""
    k = np.minimum((t // window).astype(np.int64), n_windows - 1)
    count = np.bincount(k, minlength=n_windows)
    hits = np.bincount(k, weights=flags.astype(np.float64), minlength=n_windows)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, 100.0 * hits / count, np.nan), count


def prediction_figure(pred: Any) -> Any:
    """The figure for a record's :class:`~ecg_automl.tflite.predict.Prediction`: p(abnormal) per beat with the
    threshold (annotated abnormal beats marked above it when the annotations were read), and the abnormal burden
    per window below; lead-off gaps are shaded in both. Returns the matplotlib figure (two axes)."""
    if pred.fs is None:
        raise ValueError("a plot needs a record's beat times; CSV rows have none")
    plt = _plt()
    t = np.asarray(pred.samples, dtype=np.float64) / pred.fs
    duration = max(pred.n_samples / pred.fs, float(t.max()) if len(t) else 0.0, 1.0)
    flagged = np.asarray(pred.abnormal, dtype=bool)
    ref = None if pred.reference is None else np.asarray(pred.reference, dtype=bool)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(13, 6.8), dpi=110, sharex=True,
                                      gridspec_kw={"height_ratios": [3, 2]})
    dot = 6 if len(t) < 5000 else 2
    top.scatter(t[~flagged], pred.prob[~flagged], s=dot, c=_NORMAL, lw=0, rasterized=True,
                label=f"beat under threshold ({int((~flagged).sum())})")
    false_alarms = "" if ref is None else f"; {int((flagged & ~ref).sum())} not annotated abnormal"
    top.scatter(t[flagged], pred.prob[flagged], s=dot + 2, c=_FLAGGED, lw=0, rasterized=True,
                label=f"flagged abnormal ({int(flagged.sum())}{false_alarms})")
    top.axhline(pred.threshold, color="k", ls="--", lw=1, label=f"threshold {pred.threshold:.3f}")
    if ref is not None:  # rows of ticks above the beats: where the annotations say abnormal, flagged or missed (one
        # row each: on a long record the row drawn last hid the other)
        for hit, color, what, row in ((True, _REFERENCE, "annotated abnormal, flagged", 1.06),
                                      (False, _MISSED, "annotated abnormal, missed", 1.12)):
            m = ref & (flagged == hit)
            if m.any():
                top.plot(t[m], np.full(int(m.sum()), row), "|", color=color, ms=6, mew=0.8, rasterized=True,
                         label=f"{what} ({int(m.sum())})")
    top.set_ylim(-0.03, 1.16 if ref is not None else 1.03)
    top.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
    top.set_ylabel("p(abnormal)")
    gaps = np.reshape(pred.gaps if pred.gaps is not None else np.zeros((0, 2)), (-1, 2)) / pred.fs
    for i, (a, b) in enumerate(gaps):  # a gap of a few seconds in a day is drawn at least a pixel or two wide
        b = max(b, a + duration / 800)
        for ax in (top, bottom):
            ax.axvspan(a, b, color=_GAP, alpha=0.5, lw=0, zorder=0,
                       label="lead-off gap" if i == 0 and ax is top else None)
    n_items = len(top.get_legend_handles_labels()[1])
    top.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncol=n_items if n_items <= 4 else 3, frameon=False, fontsize=9, markerscale=1.8,
               handletextpad=0.3, columnspacing=1.2, borderaxespad=0.2)

    window = burden_window_s(duration)
    n_windows = int(np.ceil(duration / window))
    pct, count = _burden(t, flagged, window, n_windows)
    edges = np.arange(n_windows) * window
    # a window cut short by a lead-off gap holds a few beats, whose percentage jumps: drawn faint and hatched; a
    # window without beats is not drawn (it was a 0 % bar)
    usual = float(np.median(count[count > 0])) if (count > 0).any() else 0.0
    covered = np.clip(duration - edges, 0.0, window) / window  # the record's last window may be a few seconds long
    thin = (count > 0) & (count < 0.25 * usual * covered)
    bottom.bar(edges[~thin], pct[~thin], width=window, align="edge", color=_FLAGGED, alpha=0.75, lw=0,
               label="flagged by the model")
    if thin.any():
        bottom.bar(edges[thin], pct[thin], width=window, align="edge", color=_FLAGGED, alpha=0.25, lw=0,
                   hatch="///", label="window with under a quarter of the usual beats")
    if ref is not None:
        ref_pct, _ = _burden(t, ref, window, n_windows)
        bottom.step(np.r_[edges, duration], np.r_[ref_pct, ref_pct[-1:]], where="post", color=_REFERENCE, lw=1.2,
                    label="annotated abnormal")
    peak = float(np.nanmax(np.r_[pct, 0.0] if ref is None else np.r_[pct, ref_pct, 0.0]))
    bottom.set_ylim(0, max(5.0, min(100.0, peak) * 1.3))  # headroom for the legend: it hid the highest bars
    if peak > 100 / 1.3:
        bottom.set_yticks([0, 25, 50, 75, 100])
    if not flagged.any():
        bottom.text(0.5, 0.5, "no beat flagged abnormal", transform=bottom.transAxes, ha="center", va="center",
                    fontsize=10, color="0.35")
    what = f"{window / 60:g} min" if window >= 60 else f"{window:g} s"
    bottom.set_ylabel(f"abnormal beats\nper {what} (%)")
    bottom.legend(loc="upper right", fontsize=9, frameon=True, framealpha=0.85)

    bottom.set_xlim(0, duration)
    bottom.set_xlabel(_time_axis(bottom, duration))
    for ax in (top, bottom):
        ax.grid(axis="y", color="#dddddd", lw=0.6)
        ax.set_axisbelow(True)
    fig.suptitle(_title(pred, duration), fontsize=11, x=0.01, ha="left")
    notes = _warning_text(pred.summary)
    if notes:  # what the printed report warns of (a record the search trained on, another lead read) stays with the
        # picture, which is often all that is passed on
        n_lines = notes.count("\n") + 1
        height = 6.8 + 0.17 * n_lines
        fig.set_size_inches(13, height)
        fig.text(0.01, 0.008, notes, fontsize=8, color="#8b0000", ha="left", va="bottom")
        fig.tight_layout(rect=(0, (0.17 * n_lines + 0.1) / height, 1, 1))
    else:
        fig.tight_layout()
    return fig


def _warning_text(summary: dict[str, Any], width: int = 190, most: int = 8) -> str:
    """The prediction's warnings as lines under the plot, each wrapped to ``width`` characters, at most ``most`` lines
    (the rest counted)."""
    import textwrap

    from .predict import summary_warnings

    lines = [line for w in summary_warnings(summary)
             for line in textwrap.wrap(f"WARNING: {w}", width, subsequent_indent="    ")]
    if len(lines) > most:
        lines = lines[:most - 1] + [f"... and {len(lines) - most + 1} more line(s): see the printed report"]
    return "\n".join(lines)


def _title(pred: Any, duration: float) -> str:
    """Record, length, beats, how many flagged, and (with annotations) sensitivity and PPV."""
    s = pred.summary
    h, m = int(duration // 3600), int(duration % 3600 // 60)
    length = f"{h} h {m:02d} min" if h else f"{duration / 60:.1f} min" if duration > 120 else f"{duration:.0f} s"
    line = (f"{Path(pred.source).name}: {length}, {s.get('beats', len(pred.prob))} beats from the "
            f"{s.get('beat_source', 'record')}, {s.get('abnormal_beats', int(pred.abnormal.sum()))} flagged abnormal "
            f"({100 * s.get('abnormal_fraction', 0.0):.1f}%)")
    a = s.get("against_annotations")
    if a:
        fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
        line += f"; against the annotations: sensitivity {fmt(a['sensitivity'])}, PPV {fmt(a['ppv'])}"
    g = s.get("gaps")
    if g:
        line += f"; {g['count']} lead-off gap(s), {g['seconds']:.0f} s"
    return line


def save_prediction_plot(pred: Any, path: str | Path) -> Path:
    """Draw :func:`prediction_figure` and write it to ``path`` through a temporary file (no half-written picture
    is left under the name if drawing fails); the folder is created. Returns the path."""
    plt = _plt()
    path = Path(path)
    fig = prediction_figure(pred)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fig.savefig(tmp, format=path.suffix.lower().lstrip(".") or "png")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return path
