"""The final test: retrain the best configuration on all search patients, evaluate once on held-out ones."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from ecg_data import BeatDataset

from . import plots
from .metrics import binary_metrics, format_report, full_report
from .tracking import Tracker
from .training import fit, predict

log = logging.getLogger("search")


def fit_final(config: dict[str, Any], train: BeatDataset, *, seed: int = 0, members: int = 1):
    """The final model: ``config`` trained on ``train`` (seed ``seed``), or with ``members`` > 1 the average
    of that many such models (seeds ``seed``, ``seed + 1``, ...) as one model (:func:`spaces.build_ensemble`).
    Returns (model, the members' :class:`~search.training.FitResult`)."""
    if members < 1:
        raise ValueError(f"members must be at least 1, not {members}")
    fits = []
    for i in range(members):
        if members > 1:
            log.info("final model: training member %d/%d", i + 1, members)
        fits.append(fit(config, train, None, seed=seed + i))
    if members == 1:
        return fits[0].model, fits
    from spaces import build_ensemble

    return build_ensemble(config, [f.model for f in fits], channels=int(train.X.shape[2])), fits


def final_test(
    config: dict[str, Any],
    threshold: float,
    data: BeatDataset,
    *,
    seed: int = 0,
    members: int = 1,
    out_path: str | Path | None = None,
    tracker: Tracker | None = None,
    run_id: str | None = None,
    title: str = "final test",
) -> dict[str, Any]:
    """Train ``config`` on every 'search' beat, test on every 'test' beat at the validation-chosen
    ``threshold``; return the report (also at threshold 0.5), save the model, log all to ``run_id``.

    ``members`` > 1 trains the config that many times (seeds ``seed``, ``seed + 1``, ...) and the final model
    is their average (:func:`spaces.build_ensemble`, one model to save and export): the seeds' models
    disagree on unseen patients, and their average ranks those patients' beats better than a typical one."""
    train, test = data.search_part(), data.test_part()
    if len(test) == 0:
        raise ValueError(f"{data.name}: no held-out test patients")
    t0 = time.perf_counter()
    model, fits = fit_final(config, train, seed=seed, members=members)
    prob = predict(model, config, test)
    report = full_report(test.y, prob, threshold, labels=test.label)
    report["at_0.5"] = binary_metrics(test.y, prob, 0.5)
    report["train_beats"] = int(len(train))
    report["train_patients"] = int(len(np.unique(train.groups)))
    report["members"] = int(members)
    if members > 1:
        report["member_roc_auc"] = [binary_metrics(test.y, predict(f.model, config, test), threshold)["roc_auc"]
                                    for f in fits]
    report["test_patients"] = int(len(np.unique(test.groups)))
    report["seconds"] = time.perf_counter() - t0
    if out_path is not None:
        out_path = Path(out_path)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        model.save(out_path)
        report["model_path"] = str(out_path.resolve())
    if tracker is not None and run_id is not None:
        tracker.log_metrics(run_id, {f"test.{k}": v for k, v in report["abnormal"].items()})
        tracker.log_metrics(run_id, {f"test_at_0.5.{k}": v for k, v in report["at_0.5"].items()})
        for cls, m in report["per_class"].items():
            tracker.log_metrics(run_id, {f"test.{cls}.{k.replace('-score', '')}": v for k, v in m.items()})
        tracker.log_json(run_id, report, "final_test.json")
        tracker.log_text(run_id, format_report(report, title), "final_test.txt")
        fig = plots.confusion_figure(report["confusion_matrix"], title)
        tracker.log_figure(run_id, fig, "final_confusion_matrix.png")
        plots.close(fig)
        fig = plots.roc_figure(test.y, prob, title)
        tracker.log_figure(run_id, fig, "final_roc.png")
        plots.close(fig)
        tracker.log_model(run_id, model, "final_model.keras")
    return report
