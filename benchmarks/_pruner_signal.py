"""How well the pruner's running signal predicts where a finished trial ends up
(``search_efficiency.py --pruner-signal DIR ...``, over the Optuna studies its ``--work-dir`` keeps).

A pruner decides at step ``fold * epochs + epoch`` from the running fold mean of the validation ROC-AUC
(``search.objective.CVObjective._report_epoch``). For every COMPLETE trial with all its folds, this
compares the value reported at each step with the trial's objective (what it is ranked by) and with the
mean objective of the folds not started at that step (patients the signal has not seen): Spearman's rho
with a 90 % bootstrap interval. Only completed trials have every step, so the trials a pruner stopped are
missing: the figures describe the survivors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

BOOTSTRAP = 2000


def collect(paths: list[Path]) -> list[dict[str, Any]]:
    """Completed trials with every fold from each ``optuna.db`` under ``paths`` (files or folders)."""
    import optuna
    from optuna.trial import TrialState

    from search import StudySettings
    from search.study import _epochs_per_fold

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows: list[dict[str, Any]] = []
    for path in paths:
        dbs = [path] if path.is_file() else sorted(path.rglob("optuna.db"))
        if not dbs:
            raise SystemExit(f"error: no optuna.db under {path} (pass search_efficiency.py's --work-dir)")
        for db in dbs:
            url = f"sqlite:///{db}"
            for summary in optuna.get_all_study_summaries(url, include_best_trial=False):
                study = optuna.load_study(study_name=summary.study_name, storage=url)
                stored = study.user_attrs.get("settings", {})
                settings = StudySettings.from_dict(stored)
                folds, epochs = int(settings.folds), _epochs_per_fold(settings)
                for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
                    fm = t.user_attrs.get("fold_metrics", [])
                    if len(fm) != folds or not t.intermediate_values or any("objective" not in f for f in fm):
                        continue
                    rows.append({"study": f"{db}:{summary.study_name}", "folds": folds, "epochs": epochs,
                                 "metric": settings.metric, "pruner": study.user_attrs.get("pruner", "median"),
                                 "objective": float(t.value), "fold_objective": [float(f["objective"]) for f in fm],
                                 "steps": {int(k): float(v) for k, v in t.intermediate_values.items()}})
    return rows


def _rho(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> dict[str, float]:
    from scipy.stats import spearmanr

    rho = float(spearmanr(x, y).statistic)
    boot = []
    for _ in range(BOOTSTRAP):
        i = rng.integers(0, len(x), len(x))
        if len(np.unique(x[i])) > 1 and len(np.unique(y[i])) > 1:
            boot.append(spearmanr(x[i], y[i]).statistic)
    lo, hi = np.percentile(boot, [5, 95]) if boot else (float("nan"), float("nan"))
    return {"rho": rho, "ci90": [float(lo), float(hi)]}


def analyse(rows: list[dict[str, Any]], seed: int = 0) -> list[dict[str, Any]]:
    """Per group of studies with the same folds, epochs and metric: Spearman's rho of each step's signal."""
    rng = np.random.default_rng(seed)
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["folds"], r["epochs"], r["metric"]), []).append(r)
    out = []
    for (folds, epochs, metric), group in sorted(groups.items()):
        steps = sorted(set.intersection(*(set(r["steps"]) for r in group)))
        per_step = []
        for s in steps:
            k = s // epochs if epochs else 0
            signal = np.array([r["steps"][s] for r in group])
            entry = {"step": s, "fold": k + 1, "epoch": (s % epochs) + 1 if epochs else None,
                     "share_of_training": (s + 1) / (folds * epochs) if epochs else None,
                     "vs_objective": _rho(signal, np.array([r["objective"] for r in group]), rng)}
            if k + 1 < folds:
                unseen = np.array([np.mean(r["fold_objective"][k + 1:]) for r in group])
                entry["vs_unseen_folds"] = _rho(signal, unseen, rng)
            per_step.append(entry)
        out.append({"folds": folds, "epochs_per_fold": epochs, "metric": metric, "trials": len(group),
                    "studies": sorted({r["study"] for r in group}),
                    "pruners": sorted({r["pruner"] for r in group}), "per_step": per_step})
    return out


def plot(groups: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(groups), figsize=(7 * len(groups), 4.5), squeeze=False)
    for ax, g in zip(axes[0], groups):
        ps = g["per_step"]
        x = [p["step"] for p in ps]
        for key, label, colour in (("vs_objective", "the trial's objective (all folds)", "#1f77b4"),
                                   ("vs_unseen_folds", "its folds not started yet", "#ff7f0e")):
            pts = [(p["step"], p[key]) for p in ps if key in p]
            if not pts:
                continue
            xs = [s for s, _ in pts]
            ax.plot(xs, [v["rho"] for _, v in pts], "o-", color=colour, label=label)
            ax.fill_between(xs, [v["ci90"][0] for _, v in pts], [v["ci90"][1] for _, v in pts], color=colour,
                            alpha=0.15, linewidth=0)
        ax.set_xticks(x, [f"f{p['fold']}e{p['epoch']}" for p in ps])
        ax.axhline(0, color="black", linewidth=0.5)
        ax.set_ylim(-0.5, 1.0)
        ax.set_xlabel("step the pruner decides at (fold, epoch)")
        signal = "F1 at 0.5" if g["metric"] == "f1@0.5" else "ROC-AUC"
        ax.set_ylabel("Spearman rho")
        ax.set_title(f"running validation {signal} at each step vs ...\n{g['trials']} completed trials, "
                     f"{g['folds']} folds x {g['epochs_per_fold']} epochs (90 % bootstrap bands)", fontsize=9)
        ax.legend(fontsize=8, loc="lower right")
        ax.grid(alpha=0.3)
    fig.suptitle("What the pruner sees, against where the trial ends up")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
