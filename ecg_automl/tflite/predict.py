"""Classify the beats of a WFDB record or a CSV of beats with an exported ``.tflite`` model.

This is the Raspberry Pi path: LiteRT, numpy, scipy and wfdb only — never TensorFlow, scikit-learn,
pandas, Optuna or MLflow (a test checks the imports).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ecg_data._wfdb_io import detect_qrs, read_annotations, read_record
from ecg_data.errors import DataError
from ecg_data.mitdb import AAMI, ABNORMAL
from ecg_data.preprocess import N_RR_FEATURES, beats_from_signal, normalise, resample

from .convert import TFLiteError
from .runtime import TFLiteModel, unreachable_threshold_message
from .sidecar import read_sidecar


@dataclass
class Prediction:
    """Per-beat probabilities of *abnormal* with the beats' sample positions, and a record summary."""

    source: str
    samples: np.ndarray
    prob: np.ndarray
    threshold: float
    reference: np.ndarray | None = None  # 1 = abnormal per the record's own annotations, when asked
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def abnormal(self) -> np.ndarray:
        return self.prob >= self.threshold


def _summary(pred: Prediction, output_max: float = float("inf")) -> dict[str, Any]:
    n = len(pred.prob)
    flagged = int(pred.abnormal.sum())
    out: dict[str, Any] = {"beats": n, "abnormal_beats": flagged,
                           "abnormal_fraction": flagged / n if n else 0.0,
                           "mean_probability": float(pred.prob.mean()) if n else 0.0,
                           "threshold": pred.threshold,
                           "verdict": "abnormal beats present" if flagged else "no abnormal beat found"}
    unreachable = unreachable_threshold_message(pred.threshold, output_max)
    if unreachable:  # "no abnormal beat" would be a statement the model cannot make
        out["warning"] = unreachable
        out["verdict"] = "unknown: the model cannot reach its threshold"
    if pred.reference is not None and n:
        ref, hat = pred.reference.astype(bool), pred.abnormal
        tp, tn = int((ref & hat).sum()), int((~ref & ~hat).sum())
        fp, fn = int((~ref & hat).sum()), int((ref & ~hat).sum())
        out["against_annotations"] = {
            "accuracy": (tp + tn) / n, "sensitivity": tp / (tp + fn) if tp + fn else None,
            "specificity": tn / (tn + fp) if tn + fp else None, "ppv": tp / (tp + fp) if tp + fp else None,
            "tp": tp, "fp": fp, "tn": tn, "fn": fn}
    return out


def _model_inputs(meta: dict[str, Any], windows: np.ndarray, rr: np.ndarray) -> dict[str, np.ndarray]:
    length, full = int(meta["input_length"]), windows.shape[1]
    start = (full - length) // 2
    inputs = {"ecg": windows[:, start:start + length, :]}
    if meta["rr_features"]:
        inputs["rr"] = rr
    return inputs


def _check_rr_width(model: TFLiteModel, model_path) -> None:
    """Refuse a model whose RR input has another width than the features this version computes (a model
    exported by an older ecg-automl), with a message that says what to do instead of a shape error."""
    if "rr" not in model.inputs:
        return
    width = int(model.inputs["rr"]["shape"][-1])
    if width != N_RR_FEATURES:
        raise TFLiteError(f"{model_path}: the model takes {width} RR-interval features, but this ecg-automl "
                          f"computes {N_RR_FEATURES}; it was exported by another version -- re-export it "
                          f"(ecg-automl export) or predict with the version that exported it")


def predict_record(model_path: str | Path, record: str | Path, *, annotations: str | None = None,
                   threads: int = 1) -> Prediction:
    """Classify every beat of a WFDB record (``record`` without extension).

    Beats are found with wfdb's XQRS detector, as on a device; with ``annotations='atr'`` the record's
    reference beat positions are used instead and the summary compares the model with their labels.
    """
    meta = read_sidecar(model_path)
    model = TFLiteModel(model_path, threads=threads)
    _check_rr_width(model, model_path)
    record = Path(record)
    head = read_record(record)
    lead = meta["lead"]
    ch = head.sig_names.index(lead) if lead in head.sig_names else 0
    sig = head.signal[:, ch]
    reference = None
    if annotations:
        samples, symbols = read_annotations(record, annotations)
        beat = np.isin(symbols, list(AAMI))
        samples, symbols = samples[beat], symbols[beat]
        keep_cls = np.array([AAMI[s] != "Q" for s in symbols], dtype=bool)
    else:
        samples = detect_qrs(sig, head.fs)
        symbols, keep_cls = None, np.ones(len(samples), dtype=bool)
    if len(samples) == 0:
        raise DataError(f"{record}: no beats found (lead {head.sig_names[ch]})")
    band = meta.get("filter", {})
    windows, rr, kept = beats_from_signal(sig, head.fs, samples, fs=float(meta["fs"]), length=int(meta["window"]),
                                          low=band.get("low", 0.5), high=band.get("high", 40.0))
    use = keep_cls[kept]
    windows, rr = windows[use], rr[use]
    beat_samples = samples[kept][use]
    if symbols is not None:
        reference = np.isin([AAMI[s] for s in symbols[kept][use]], ABNORMAL)
    prob = model.predict(_model_inputs(meta, windows, rr))
    pred = Prediction(str(record), beat_samples, prob, float(meta["threshold"]), reference)
    pred.summary = {**_summary(pred, model.output_max), "lead": head.sig_names[ch], "fs_record": head.fs,
                    "beat_source": f"annotations ({annotations})" if annotations else "XQRS detector"}
    return pred


def predict_csv(model_path: str | Path, csv_path: str | Path, *, fs: float | None = None,
                has_label: bool = False, threads: int = 1) -> Prediction:
    """Classify a CSV of beats, one window per row (optionally a last column with a 0 = normal label),
    sampled at ``fs`` (default the model's rate), centred on the R peak. RR context is not available in
    this format: models that need it are refused."""
    meta = read_sidecar(model_path)
    if meta["rr_features"]:
        raise TFLiteError(f"{model_path}: this model uses RR-interval context, which a CSV of isolated beats "
                          f"does not have; classify a WFDB record instead")
    model = TFLiteModel(model_path, threads=threads)
    try:
        rows = np.loadtxt(csv_path, delimiter=",", dtype=np.float64, ndmin=2)
    except (ValueError, OSError) as exc:
        raise DataError(f"{csv_path}: not a numeric CSV of beats ({exc})") from None
    labels = None
    if has_label:
        labels, rows = rows[:, -1] != 0, rows[:, :-1]
    fs_in = float(fs or meta["fs"])
    beats = resample(rows.T, fs_in, float(meta["fs"])).T if fs_in != float(meta["fs"]) else rows
    window = int(meta["window"])
    if beats.shape[1] < window:
        pad = window - beats.shape[1]
        beats = np.pad(beats, ((0, 0), (pad // 2, pad - pad // 2)))
    start = (beats.shape[1] - window) // 2
    windows = normalise(beats[:, start:start + window, None])
    prob = model.predict(_model_inputs(meta, windows, np.zeros((len(windows), 0), np.float32)))  # no RR: refused above
    pred = Prediction(str(csv_path), np.arange(len(prob)), prob, float(meta["threshold"]), labels)
    pred.summary = {**_summary(pred, model.output_max), "beat_source": "CSV rows"}
    return pred


def format_prediction(pred: Prediction, max_beats: int = 50) -> str:
    """Per-beat table (first ``max_beats``) and the summary, for the terminal."""
    lines = [f"{'beat':>6} {'sample':>9} {'p(abnormal)':>12}  decision"]
    for i in range(min(len(pred.prob), max_beats)):
        ref = ""
        if pred.reference is not None:
            ref = "  (annotated abnormal)" if pred.reference[i] else "  (annotated normal)"
        lines.append(f"{i:>6} {int(pred.samples[i]):>9} {pred.prob[i]:>12.3f}  "
                     f"{'ABNORMAL' if pred.abnormal[i] else 'normal'}{ref}")
    if len(pred.prob) > max_beats:
        lines.append(f"   ... {len(pred.prob) - max_beats} more beats (--all or --json for every beat)")
    s = pred.summary
    lines.append(f"{pred.source}: {s['beats']} beats, {s['abnormal_beats']} abnormal "
                 f"({100 * s['abnormal_fraction']:.1f}%) at threshold {s['threshold']:.3f}: {s['verdict']}")
    if "warning" in s:
        lines.append(f"  WARNING: {s['warning']}")
    if "against_annotations" in s:
        a = s["against_annotations"]
        fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
        lines.append(f"  against the record's annotations: accuracy {fmt(a['accuracy'])}, sensitivity "
                     f"{fmt(a['sensitivity'])}, specificity {fmt(a['specificity'])}, PPV {fmt(a['ppv'])}")
    return "\n".join(lines)
