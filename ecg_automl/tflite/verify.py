"""Check an exported ``.tflite`` against its Keras model on held-out patients."""

from __future__ import annotations

from typing import Any

import numpy as np

from .runtime import unreachable_threshold_message

#: An export whose F1 falls more than this below the Keras model's is flagged, whatever its mode: dynamic-range
#: and float16 exports lose accuracy too, and an fp32 one that does points at a conversion fault.
F1_TOLERANCE = 0.01
INT8_F1_TOLERANCE = F1_TOLERANCE  # its earlier name
#: ... or whose ROC-AUC falls more than this below it: an int8 model whose outputs all quantise to one value ranks
#: nothing (ROC-AUC 0.5) while its F1 can equal a Keras F1 of 0 at a threshold below the int8 step.
AUC_TOLERANCE = 0.02
#: ... or whose decisions at the threshold agree with the Keras model's on fewer than this share of the beats: a
#: conversion that moves many beats across the threshold both ways can leave F1 where it was.
MIN_AGREEMENT = 0.95
#: ... or, in fp32, whose probabilities differ from Keras's by more than this anywhere: a float32 conversion agrees
#: to about 1e-6, so a larger difference is a conversion fault, whatever it does to the figures.
FP32_MAX_DPROB = 1e-3


def _metrics(y: np.ndarray, prob: np.ndarray, threshold: float) -> dict[str, float]:
    from sklearn.metrics import f1_score, roc_auc_score

    pred = prob >= threshold
    return {"accuracy": float((pred == y.astype(bool)).mean()),
            "f1": float(f1_score(y, pred, zero_division=0)),
            "roc_auc": float(roc_auc_score(y, prob)) if len(np.unique(y)) == 2 else float("nan")}


def verify(keras_prob: np.ndarray, tflite_prob: np.ndarray, y: np.ndarray, threshold: float,
           mode: str, output_max: float = float("inf")) -> dict[str, Any]:
    """Agreement of the TFLite model with Keras (max |Δprob|, decision agreement) and the TFLite model's
    own accuracy/F1/AUC on the held-out beats; ``flagged`` when it loses more than 1 F1 point (any mode).
    ``output_max`` (``TFLiteModel.output_max``) adds a warning when the threshold is above it."""
    keras_prob = np.asarray(keras_prob, dtype=np.float64).ravel()
    tflite_prob = np.asarray(tflite_prob, dtype=np.float64).ravel()
    delta = np.abs(keras_prob - tflite_prob)
    k = _metrics(y, keras_prob, threshold)
    t = _metrics(y, tflite_prob, threshold)
    report: dict[str, Any] = {
        "mode": mode, "beats": int(len(y)), "threshold": float(threshold),
        "max_abs_dprob": float(delta.max()), "mean_abs_dprob": float(delta.mean()),
        "decision_agreement": float(((keras_prob >= threshold) == (tflite_prob >= threshold)).mean()),
        "keras": k, "tflite": t, "f1_drop": k["f1"] - t["f1"], "auc_drop": k["roc_auc"] - t["roc_auc"],
    }
    reasons = []
    if report["f1_drop"] > F1_TOLERANCE:
        reasons.append(f"the {mode} model's F1 is {100 * report['f1_drop']:.1f} points below the Keras model's (more "
                       f"than {100 * F1_TOLERANCE:.0f}); {mode} conversion hurts this model")
    if report["auc_drop"] > AUC_TOLERANCE:  # NaN (one class only) compares False
        distinct = len(np.unique(tflite_prob))
        reasons.append(f"the {mode} model's ROC-AUC is {report['auc_drop']:.3f} below the Keras model's (more than "
                       f"{AUC_TOLERANCE:g}): it ranks the beats worse"
                       + (f"; its outputs take only {distinct} distinct value(s) on these beats" if distinct <= 3 else ""))
    if report["decision_agreement"] < MIN_AGREEMENT:
        reasons.append(f"the {mode} model decides {100 * (1 - report['decision_agreement']):.1f} % of the beats "
                       f"otherwise than the Keras model at threshold {threshold:.3f} (more than "
                       f"{100 * (1 - MIN_AGREEMENT):.0f} %)")
    if mode == "fp32" and report["max_abs_dprob"] > FP32_MAX_DPROB:
        reasons.append(f"the fp32 model's probabilities differ from the Keras model's by up to "
                       f"{report['max_abs_dprob']:.2g} (a float32 conversion agrees to about 1e-6): the conversion "
                       f"changed the model")
    report["flagged"] = bool(reasons)
    report["flag_reasons"] = reasons
    report["output_max"] = float(output_max) if np.isfinite(output_max) else None
    report["threshold_unreachable"] = unreachable_threshold_message(threshold, output_max)
    if report["threshold_unreachable"]:
        report["flagged"] = True
    return report


def format_verification(v: dict[str, Any]) -> str:
    """The lines export prints for :func:`verify`'s result: probability gaps, agreement, and both sides' metrics."""
    k, t = v["keras"], v["tflite"]
    lines = [f"verification on {v['beats']} held-out beats ({v['mode']}, threshold {v['threshold']:.3f}):",
             f"  max |dprob| {v['max_abs_dprob']:.5f}, mean |dprob| {v['mean_abs_dprob']:.5f}, "
             f"decision agreement {100 * v['decision_agreement']:.2f}%",
             f"  {'':<8}{'accuracy':>10}{'F1':>10}{'ROC-AUC':>10}",
             f"  {'keras':<8}{k['accuracy']:>10.4f}{k['f1']:>10.4f}{k['roc_auc']:>10.4f}",
             f"  {'tflite':<8}{t['accuracy']:>10.4f}{t['f1']:>10.4f}{t['roc_auc']:>10.4f}"]
    if v.get("threshold_unreachable"):
        lines.append(f"  WARNING: {v['threshold_unreachable']}")
    elif v["flagged"]:
        for reason in v.get("flag_reasons") or [  # a sidecar written before the reasons were recorded
                f"the {v['mode']} model's F1 is {100 * v['f1_drop']:.1f} points below the Keras model's (more than "
                f"{100 * F1_TOLERANCE:.0f}); {v['mode']} conversion hurts this model"]:
            lines.append(f"  WARNING: {reason}")
    return "\n".join(lines)
