"""What a study storage holds, one row per study: Optuna's own ``optuna studies`` prints every study attribute, the
whole space file included, in one table cell, so a storage of a few studies filled screens."""

from __future__ import annotations

import datetime as dt
from typing import Any

import optuna
from optuna.trial import TrialState

from .metrics import describe_values
from .storage import (DEFAULT_STORAGE, StorageError, make_storage, redact_url, sqlite_file_missing,
                      storage_write_problem)


def study_summaries(storage_url: str | None = None) -> list[dict[str, Any]]:
    """One dict per study of the storage, by name: its engine, dataset, objectives, trials by state, best trial (or
    Pareto front size), final test on held-out patients and when its last trial ended. Reads only."""
    url = storage_url or DEFAULT_STORAGE
    if sqlite_file_missing(url):
        raise StorageError(f"no study storage at {redact_url(url)} (a search creates it; give --storage for another)")
    storage = make_storage(url, heartbeat=None, create=False)
    try:
        return [_summary(optuna.load_study(study_name=s.study_name, storage=storage))
                for s in sorted(optuna.get_all_study_summaries(storage, include_best_trial=False),
                                key=lambda s: s.study_name)]
    except Exception as exc:  # a corrupt page opens, then fails a read
        said = storage_write_problem(exc)
        if said is None:
            raise
        raise StorageError(f"cannot read study storage {redact_url(url)} ({said})") from None


def _summary(study: optuna.Study) -> dict[str, Any]:
    from .study import state_counts

    settings = study.user_attrs.get("settings") or {}
    trials = study.get_trials(deepcopy=False)
    objectives = list(settings.get("objectives") or ["quality"])
    metric = settings.get("metric", "f1")
    row: dict[str, Any] = {
        "study": study.study_name, "engine": str(study.user_attrs.get("engine", "optuna")),
        "dataset": settings.get("dataset"), "metric": metric, "objectives": objectives,
        "trials": state_counts(trials), "best": None, "pareto_front": None, "final_test": None,
        "last_trial_end": None,
        "fully_created": bool(settings),  # False: a search was stopped while creating it (its next run finishes it)
    }
    if not settings:
        return row
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if complete and len(study.directions) == 1:
        best = study.best_trial
        row["best"] = {"trial": best.number, "value": best.value, "text": describe_values(metric, [best.value])}
    elif complete:
        row["pareto_front"] = sorted(t.number for t in study.best_trials)
    final = study.user_attrs.get("final") or {}
    if final.get("abnormal"):
        row["final_test"] = {"trial": final.get("trial"), "f1": final["abnormal"].get("f1"),
                             "roc_auc": final["abnormal"].get("roc_auc")}
    ends = [t.datetime_complete for t in trials if t.datetime_complete is not None]
    if ends:
        row["last_trial_end"] = max(ends).isoformat(timespec="seconds")
    return row


def format_summaries(rows: list[dict[str, Any]], storage_url: str | None = None) -> str:
    """The rows of :func:`study_summaries` as the ``ecg-automl studies`` table."""
    url = redact_url(storage_url or DEFAULT_STORAGE)
    if not rows:
        return f"no study in {url}"
    table = [("study", "engine", "data", "objectives", "trials", "best", "final test (held-out)", "last trial ended")]
    for r in rows:
        objectives = ", ".join(r["metric"] if o == "quality" else o for o in r["objectives"])
        trials = ", ".join(f"{n} {state}" for state, n in r["trials"].items()) or (
            "none" if r.get("fully_created", True) else "none: never fully created (a search was stopped creating it)")
        if r["best"]:
            best = f"trial {r['best']['trial']}: {r['best']['text']}"
        elif r["pareto_front"]:
            best = f"Pareto front of {len(r['pareto_front'])}"
        else:
            best = "-"
        f = r["final_test"]
        final = (f"trial {f['trial']}: F1 {f['f1']:.3f}, ROC-AUC {f['roc_auc']:.3f}" if f and f["f1"] is not None
                 and f["roc_auc"] is not None else "-")
        when = (dt.datetime.fromisoformat(r["last_trial_end"]).strftime("%Y-%m-%d %H:%M") if r["last_trial_end"]
                else "-")
        table.append((r["study"], r["engine"], r["dataset"] or "-", objectives, trials, best, final, when))
    widths = [max(len(str(row[i])) for row in table) for i in range(len(table[0]))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip() for row in table]
    return f"{len(rows)} stud{'y' if len(rows) == 1 else 'ies'} in {url}:\n" + "\n".join(lines)
