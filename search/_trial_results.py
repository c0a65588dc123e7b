"""What a trial logs, shared by the Optuna objective (:mod:`search.objective`) and the KerasTuner engine
(:mod:`search.keras_tuner_engine`), so that both engines' trials carry the same per-epoch curves, per-fold metrics,
summary, plots and model in MLflow, and the same attributes in the study."""

from __future__ import annotations

import json
import logging
from typing import Any, Callable

import numpy as np

from . import plots
from .metrics import binary_metrics, cv_objective
from .tracking import Tracker

log = logging.getLogger("search")


#: The most JSON characters of per-epoch curves a trial keeps in the study. Optuna stores a user attribute in a
#: TEXT column, which MySQL caps at 65,535 bytes, and a longer write fails the trial. Keras' eight metrics take
#: about 89 characters per fold and epoch: MySQL's cap is near 740 fold-epochs (147 epochs with 5 folds), this one
#: near 670 (134 with 5 folds). Curves past it stay in MLflow only.
CURVES_MAX_CHARS = 60_000


def curves_fit_in_study(curves: dict[str, list[float | None]]) -> bool:
    """Whether ``curves`` is small enough to keep in the study (:data:`CURVES_MAX_CHARS`)."""
    return len(json.dumps(curves)) <= CURVES_MAX_CHARS


class StudyCurves:
    """The per-epoch curves a trial keeps in the study (``kept``): a copy of them as they grow, until they would
    pass :data:`CURVES_MAX_CHARS`, which is said once (the driver and the KerasTuner engine alike)."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.kept: dict[str, list[float | None]] = {}
        self.cut = False

    def update(self, curves: dict[str, list[float | None]], k: int, epoch: int) -> bool:
        """Take ``curves`` after fold ``k``'s ``epoch``; True when ``kept`` changed (to be written to the study)."""
        if self.cut:
            return False
        if not curves_fit_in_study(curves):
            self.cut = True
            log.warning(f"trial {self.number}: its per-epoch curves from fold {k + 1}, epoch {epoch + 1} on are not "
                        f"kept in the study (over {CURVES_MAX_CHARS:,} characters, more than a MySQL TEXT column may "
                        f"hold); MLflow has them as they are logged, but `ecg-automl sync` cannot restore them after "
                        f"a tracking outage")
            return False
        self.kept = {name: list(values) for name, values in curves.items()}
        return True


def record_epoch(curves: dict[str, list[float | None]], k: int, epoch: int, logs: dict[str, float],
                 tracker: Tracker | None, run_id: str | None) -> bool:
    """One epoch of fold ``k``: appended to ``curves`` (``fold{k}.{name}``, the study's
    :data:`~search.tracking.EPOCH_CURVES`) and logged to the trial's run at step ``epoch``. True when that log
    did not reach MLflow (the trial then sets :data:`~search.tracking.CURVES_LOST` for ``sync``)."""
    for name, v in logs.items():
        curves.setdefault(f"fold{k}.{name}", []).append(_curve_value(v))
    if tracker is None or run_id is None:
        return False
    lost = tracker.lost
    tracker.log_metrics(run_id, {f"fold{k}.{name}": v for name, v in logs.items()}, step=epoch)
    return tracker.lost > lost


def undefined_value(metric: str) -> ValueError:
    """The error a trial fails with when no fold defines its value (every validation fold of one class): the
    driver's and KerasTuner's trials say the same."""
    return ValueError(f"validation {metric} is undefined: every validation fold holds one class only")


def losing(tracker: Tracker | None) -> Callable[[], bool]:
    """A check of whether any MLflow call has been lost (failed, or skipped while the store was away) since now:
    a trial that lost some of its ``fold.*`` metrics says so (:data:`~search.tracking.FOLDS_LOST`) for ``sync``."""
    before = tracker.lost if tracker is not None else 0
    return lambda: tracker is not None and tracker.lost > before


def fold_record(val_y: np.ndarray, result: Any, k: int, tracker: Tracker | None, run_id: str | None
                ) -> dict[str, float]:
    """Fold ``k``'s validation metrics at 0.5 with its training time and throughput (``result``: a
    :class:`~search.training.FitResult` with ``val_prob``), logged as ``fold.*`` at step ``k``
    (``train_seconds``: the whole ``model.fit``, of which ``validation_seconds`` the per-epoch validation)."""
    m = binary_metrics(val_y, result.val_prob)
    m.update({"train_seconds": result.seconds, "validation_seconds": result.validation_seconds,
              "beats_per_s": result.beats_per_s})
    if tracker is not None:
        tracker.log_metrics(run_id, {f"fold.{name}": v for name, v in m.items()}, step=k)
    return m


def summarise_folds(metric: str, y: np.ndarray, oof: np.ndarray, fold_of: np.ndarray,
                    fold_metrics: list[dict[str, float]]) -> tuple[float, float, dict[str, float]]:
    """The trial's value and decision threshold from its out-of-fold predictions (:func:`cv_objective`; NaN
    where no fold defines the metric), each fold's value at that threshold put in ``fold_metrics`` as
    ``objective``, and the summary: ``mean.*`` over the folds and ``oof_tuned.*`` at the threshold."""
    seen = ~np.isnan(oof)
    mean, per_fold, threshold = cv_objective(metric, y[seen], oof[seen], fold_of[seen])
    for m, value in zip(fold_metrics, per_fold):  # each fold at the one chosen threshold
        m["objective"] = value
    summary = {f"mean.{name}": _finite_mean([f[name] for f in fold_metrics]) for name in fold_metrics[0]}
    oof_m = binary_metrics(y[seen], oof[seen], threshold)
    summary.update({f"oof_tuned.{name}": v for name, v in oof_m.items()})
    return mean, threshold, summary


def _finite_mean(values: list[float]) -> float:
    """The mean of the defined values (a fold of one class has no ROC-AUC: its NaN voided the trial's mean.roc_auc,
    and for metric auc its mean.objective, beside a trial value that leaves such folds out); NaN when none is."""
    finite = [float(v) for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def log_trial_results(tracker: Tracker | None, run_id: str | None, number: int, y: np.ndarray, oof: np.ndarray,
                      threshold: float, fold_metrics: list[dict[str, float]], summary: dict[str, float],
                      model: Any) -> bool:
    """On the trial's run: each fold's objective (step = fold), the summary, the confusion matrix and ROC curve of
    the out-of-fold predictions, and the last fold's model (what ``ecg-automl export`` fetches for a trial
    that is not the study's final model). True when the model reached the run."""
    if tracker is None or run_id is None:
        return False
    for k, m in enumerate(fold_metrics):
        tracker.log_metrics(run_id, {"fold.objective": m["objective"]}, step=k)
    tracker.log_metrics(run_id, summary)
    seen = ~np.isnan(oof)
    cm = _cm(y[seen], oof[seen], threshold)
    pooled = binary_metrics(y[seen], oof[seen], threshold)["f1"]
    # the trial's value is the mean of the folds' own figures, which these pooled beats do not give
    fig = plots.confusion_figure(cm, f"trial {number}: every validation fold's beats pooled, threshold "
                                     f"{threshold:.3f}: F1 {pooled:.3f}\n(the trial's value: its metric's mean over the folds)")
    tracker.log_figure(run_id, fig, "confusion_matrix.png")
    plots.close(fig)
    fig = plots.roc_figure(y[seen], oof[seen], f"trial {number}: every validation fold's beats pooled")
    tracker.log_figure(run_id, fig, "roc.png")
    plots.close(fig)
    return tracker.log_model(run_id, model)


def _curve_value(v: Any) -> float | None:
    """An epoch's metric as the study stores it: a float, or None for NaN or infinity (not JSON)."""
    v = float(v)
    return float(f"{v:.7g}") if np.isfinite(v) else None  # 7 digits: a float32 metric's own precision, half the text


def _cm(y, prob, threshold):
    from sklearn.metrics import confusion_matrix

    return confusion_matrix(y, (prob >= threshold).astype(int), labels=[0, 1])
