"""Quality metrics for the abnormal class (scikit-learn), and the validation-chosen decision threshold."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from sklearn import metrics as skm

#: ``f1``: F1 of the abnormal class at the threshold chosen on the validation folds (the one the exported
#: model uses); ``f1@0.5``: F1 at a fixed 0.5 (the rule before this objective); ``auc``: ROC-AUC.
METRICS = ("f1", "f1@0.5", "auc")


def _scores(y, prob) -> tuple[np.ndarray, np.ndarray]:
    """``y`` as 0/1 ints and ``prob`` as a flat float array, or ValueError saying which argument is wrong:
    scikit-learn's errors do not, and where no ROC-AUC is computed a NaN probability was read as normal."""
    y, prob = np.asarray(y), np.asarray(prob)
    if prob.ndim == 2 and prob.shape[1] == 1:  # what a Keras model's predict returns
        prob = prob[:, 0]
    if y.ndim != 1 or prob.ndim != 1:
        raise ValueError(f"y and prob must be 1-D, one value per beat (shapes {y.shape} and {prob.shape})")
    if len(y) != len(prob):
        raise ValueError(f"y has {len(y)} beats but prob has {len(prob)}")
    if len(y) == 0:
        raise ValueError("no beats: y and prob are empty")
    if not np.issubdtype(prob.dtype, np.number) or np.issubdtype(prob.dtype, np.complexfloating):
        raise TypeError(f"prob must hold numbers, not {prob.dtype}")
    prob = prob.astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(prob))
    if len(bad):
        raise ValueError(f"prob holds {len(bad)} NaN or infinite value(s) (first at beat {bad[0]}): "
                         f"scores of a diverged model cannot be ranked or thresholded")
    if not np.isin(y, (0, 1)).all():
        odd = [v.item() for v in np.unique(y) if not np.isin(v, (0, 1))][:5]
        raise ValueError(f"y must be 0 (normal) or 1 (abnormal), found {', '.join(map(repr, odd))} "
                         f"(a dataset's y, not its label)")
    return y.astype(int), prob


def _check_threshold(threshold: float) -> None:
    """ValueError unless ``threshold`` is a probability: outside [0, 1] every beat gets one class."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.integer, np.floating)):
        raise TypeError(f"threshold must be a number, not {type(threshold).__name__}")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], not {threshold}")


def binary_metrics(y: np.ndarray, prob: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Accuracy, precision (PPV), recall (sensitivity), specificity, F1 and ROC-AUC of the abnormal class."""
    _check_threshold(threshold)
    y, prob = _scores(y, prob)
    pred = (prob >= threshold).astype(int)
    tn, fp, fn, tp = skm.confusion_matrix(y, pred, labels=[0, 1]).ravel()
    out = {
        "accuracy": float(skm.accuracy_score(y, pred)),
        "precision": float(skm.precision_score(y, pred, zero_division=0)),
        "recall": float(skm.recall_score(y, pred, zero_division=0)),
        "specificity": float(tn / (tn + fp)) if tn + fp else 0.0,
        "f1": float(skm.f1_score(y, pred, zero_division=0)),
        "roc_auc": float(skm.roc_auc_score(y, prob)) if len(np.unique(y)) == 2 else float("nan"),
        "threshold": float(threshold),
    }
    return out


def describe_values(metric: str, values: Sequence[float], names: Sequence[str] = ("quality",)) -> str:
    """A trial's objective values as the search prints them, each named (``f1 0.7312, latency 0.512 ms, size 38.4
    KB``): a bare ``0.7312`` did not say which of the three quality metrics a study ranks by."""
    units = {"latency": ("latency", " ms", 3), "size": ("size", " KB", 1)}
    parts = []
    for name, value in zip(names, values):
        label, unit, digits = units.get(name, (metric if name == "quality" else name, "", 4))
        parts.append(f"{label} {value:.{digits}f}{unit}")
    return ", ".join(parts)


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r} (choose from {', '.join(METRICS)})")


def fold_signal(metric: str, y: np.ndarray, prob: np.ndarray) -> float:
    """One finished fold's figure in the running mean the pruner sees: F1 at 0.5 for ``f1@0.5``, ROC-AUC
    otherwise. The validation-chosen threshold of ``f1`` is known only when every fold is done, so its
    trials are compared mid-way by the threshold-free ROC-AUC (Keras computes it every epoch anyway)."""
    _check_metric(metric)
    m = binary_metrics(y, prob)
    return m["f1"] if metric == "f1@0.5" else m["roc_auc"]


def epoch_signal(metric: str, logs: dict[str, float]) -> float:
    """:func:`fold_signal` of the fold being trained, from the validation metrics Keras logs each epoch."""
    _check_metric(metric)
    if metric == "f1@0.5":
        p, r = logs.get("val_precision", np.nan), logs.get("val_recall", np.nan)
        return 2 * p * r / (p + r) if p + r > 0 else 0.0
    return logs.get("val_auc", np.nan)


def cv_objective(metric: str, y: np.ndarray, prob: np.ndarray, folds: np.ndarray) -> tuple[float, list[float], float]:
    """The study objective over K validation folds: ``(mean over folds, per fold, threshold)``.

    ``f1`` scores every fold at the one threshold :func:`best_threshold` picks from all of them, the threshold
    the final model is exported with, so the search ranks configs by what they will deliver. F1 at 0.5
    (``f1@0.5``) ranks them by how their probabilities happen to be calibrated: in a 300 s search on MIT-BIH DS1
    a config at F1 0.34 at 0.5 had out-of-fold F1 0.76 at its chosen threshold (ROC-AUC 0.94), and lost to
    one at 0.65 and 0.65 (ROC-AUC 0.88)."""
    _check_metric(metric)
    y, prob = _scores(y, prob)
    folds = _folds(folds, len(y)).ravel()
    threshold = best_threshold(y, prob, folds)
    per_fold = []
    for k in np.unique(folds):
        m = binary_metrics(y[folds == k], prob[folds == k], threshold if metric == "f1" else 0.5)
        per_fold.append(m["roc_auc"] if metric == "auc" else m["f1"])
    finite = [v for v in per_fold if np.isfinite(v)]  # ROC-AUC is undefined on a fold of one class
    return (float(np.mean(finite)) if finite else float("nan")), [float(v) for v in per_fold], threshold


def best_threshold(y: np.ndarray, prob: np.ndarray, folds: np.ndarray | None = None) -> float:
    """Decision threshold that maximises F1 on (out-of-fold) validation predictions.

    With ``folds`` (each prediction's validation fold), the median over folds of each fold's F1-maximising
    threshold: one fold of unusual patients cannot set the threshold for all. On MIT-BIH DS1 one fold
    holding record 207 (bundle-branch-block beats that models trained without it call ventricular) pushed
    the pooled threshold to 0.99. On the full quality benchmark the two rules end up close on unseen
    patients' F1 (docs/RESULTS.md section 1); this one is the less exposed to a single fold.

    ``folds`` may hold several fold assignments, one row each (repeated K-fold): the median is then over
    every fold of every row."""
    y, prob = _scores(y, prob)
    if folds is not None:
        rows = np.atleast_2d(_folds(folds, len(y)))
        per_fold = [_f1_threshold(y[row == k], prob[row == k]) for row in rows for k in np.unique(row)]
        per_fold = [t for t in per_fold if t is not None]
        if per_fold:
            return float(np.median(per_fold))
    t = _f1_threshold(y, prob)
    return 0.5 if t is None else t


def _folds(folds, n: int) -> np.ndarray:
    """``folds`` as an array whose rows each give all ``n`` beats a fold; ValueError if its length differs."""
    folds = np.asarray(folds)
    if folds.ndim not in (1, 2) or folds.shape[-1] != n:
        raise ValueError(f"folds must give each of the {n} beats its fold (one row per repeat), "
                         f"not an array of shape {folds.shape}")
    return folds


def _f1_threshold(y: np.ndarray, prob: np.ndarray) -> float | None:
    """The F1-maximising threshold, or None when ``y`` holds only one class."""
    if len(np.unique(y)) < 2:
        return None
    precision, recall, thresholds = skm.precision_recall_curve(y, prob)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return float(thresholds[int(np.argmax(f1[:-1]))])


def full_report(y: np.ndarray, prob: np.ndarray, threshold: float, labels: np.ndarray | None = None) -> dict[str, Any]:
    """Everything the final test reports: abnormal-class metrics, per-class P/R/F1 (normal too), the
    confusion matrix and, for multi-class labels (AAMI N/S/V/F), the detection rate of each fine class."""
    _check_threshold(threshold)
    y, prob = _scores(y, prob)
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != y.shape:
            raise ValueError(f"labels has {len(labels)} beats but y has {len(y)}")
    pred = (prob >= threshold).astype(int)
    report = skm.classification_report(y, pred, labels=[0, 1], target_names=["normal", "abnormal"],
                                       output_dict=True, zero_division=0)
    out: dict[str, Any] = {
        "abnormal": binary_metrics(y, prob, threshold),
        "per_class": {k: {m: float(v) for m, v in report[k].items()} for k in ("normal", "abnormal")},
        "confusion_matrix": skm.confusion_matrix(y, pred, labels=[0, 1]).tolist(),
        "n": int(len(y)),
    }
    if labels is not None:
        out["by_label"] = {str(lab): {"n": int((labels == lab).sum()),
                                      "flagged_abnormal": float(pred[labels == lab].mean())}
                           for lab in np.unique(labels)}
    return out


def describe_final_model(report: dict[str, Any]) -> str:
    """What a final report's model is, in words ("the average of 10 models: 5 patient-grouped folds x 2 seeds")."""
    members = int(report.get("members", 1))
    if report.get("final_model") == "folds":
        repeats = int(report.get("fold_repeats", 1))
        if repeats > 1:
            return (f"the average of {members} models: {members // repeats} patient-grouped folds x "
                    f"{repeats} seeds")
        return f"the average of {members} patient-grouped fold models"
    if members > 1:
        return f"the average of {members} seeds' models, each trained on all search patients"
    return "one model trained on all search patients"


def format_report(report: dict[str, Any], title: str = "") -> str:
    """A plain-text table of :func:`full_report` for the terminal."""
    a = report["abnormal"]
    lines = [title] if title else []
    lines.append(f"  beats {report['n']}, decision threshold {a['threshold']:.3f}"
                 + (f"; trained with {report['tf_threads']} TensorFlow thread{'' if report['tf_threads'] == 1 else 's'}"
                    if "tf_threads" in report else ""))
    if report.get("members", 1) > 1:
        alone = ", ".join(f"{v:.4f}" for v in report.get("member_roc_auc", []))
        lines.append(f"  model: {describe_final_model(report)} (ROC-AUC of each alone: {alone})")
    if "search_threshold" in report:
        lines.append(f"  threshold chosen on the fold models' out-of-fold predictions (out-of-fold F1 "
                     f"{report['oof']['f1']:.4f}; the search trial's threshold was {report['search_threshold']:.3f})")
    lines.append("  abnormal class: " + "  ".join(f"{k} {a[k]:.4f}" for k in
                                                     ("accuracy", "precision", "recall", "specificity", "f1", "roc_auc")))
    lines.append(f"  {'class':<10}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}")
    for name, r in report["per_class"].items():
        lines.append(f"  {name:<10}{r['precision']:>10.4f}{r['recall']:>10.4f}{r['f1-score']:>10.4f}{int(r['support']):>10}")
    (tn, fp), (fn, tp) = report["confusion_matrix"]
    lines.append("  confusion matrix (rows true, cols predicted):")
    lines.append(f"  {'':<10}{'normal':>10}{'abnormal':>10}")
    lines.append(f"  {'normal':<10}{tn:>10}{fp:>10}")
    lines.append(f"  {'abnormal':<10}{fn:>10}{tp:>10}")
    if "by_label" in report:
        lines.append("  flagged abnormal by fine class: " + "  ".join(
            f"{k} {v['flagged_abnormal']:.3f} (n={v['n']})" for k, v in report["by_label"].items()))
    return "\n".join(lines)
