"""Figures a person would rather look at than read: confusion matrix, ROC curve, study history and importances."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _title(ax: Any, title: str, width: int = 44) -> None:
    """``title`` wrapped to the small figures' width (a final test's title was cut off at one line)."""
    import textwrap

    lines = [w for part in title.split("\n") for w in textwrap.wrap(part, width) or [""]]
    ax.set_title("\n".join(lines), fontsize=10 if len(lines) == 1 else 9)


def confusion_figure(cm: Sequence[Sequence[int]], title: str = "Confusion matrix") -> Any:
    """2x2 confusion matrix with counts and row percentages (n/a for a class with no beats)."""
    plt = _plt()
    cm = np.asarray(cm)
    fig, ax = plt.subplots(figsize=(4.4, 4), dpi=110)
    ax.imshow(cm / np.maximum(cm.sum(axis=1, keepdims=True), 1), cmap="Blues", vmin=0, vmax=1)
    for i in range(2):
        for j in range(2):
            if cm[i].sum() == 0:  # 0 of 0 is not 0 %
                ax.text(j, i, "0\nn/a", ha="center", va="center", color="0.4")
                continue
            pct = 100 * cm[i, j] / cm[i].sum()
            ax.text(j, i, f"{cm[i, j]}\n{pct:.1f}%", ha="center", va="center",
                    color="white" if pct > 60 else "black")
    ax.set_xticks([0, 1], ["normal", "abnormal"])
    ax.set_yticks([0, 1], ["normal", "abnormal"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    _title(ax, title)
    fig.tight_layout()
    return fig


def roc_figure(y: np.ndarray, prob: np.ndarray, title: str = "ROC (abnormal class)") -> Any:
    """ROC curve with its AUC."""
    from sklearn.metrics import roc_auc_score, roc_curve

    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.4, 4), dpi=110)
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    if len(np.unique(y)) == 2:
        fpr, tpr, _ = roc_curve(y, prob)
        ax.plot(fpr, tpr, label=f"AUC {roc_auc_score(y, prob):.3f}")
        ax.legend(loc="lower right")
    else:  # a curve needs both classes (a test side of normal beats only)
        only = "abnormal" if len(y) and int(np.asarray(y)[0]) == 1 else "normal"
        ax.text(0.5, 0.55, f"no ROC curve: every beat here is {only}" if len(y) else "no ROC curve: no beats",
                ha="center", va="center", fontsize=9, bbox={"facecolor": "white", "edgecolor": "0.7"})
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("sensitivity")
    _title(ax, title)
    fig.tight_layout()
    return fig


#: Fewer complete trials than this give importances that are noise (with 2, every parameter gets 1/n).
MIN_TRIALS_FOR_IMPORTANCES = 10


def study_figures(study: Any, metric: str = "f1") -> dict[str, object]:
    """Optuna's optimisation history and hyperparameter importances of a single-objective study, for its
    MLflow run; importances need :data:`MIN_TRIALS_FOR_IMPORTANCES` complete trials, so a smaller study gets
    the history only."""
    import warnings

    import optuna
    from optuna.visualization import matplotlib as ovm

    _plt()
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(study.directions) != 1 or not complete:
        return {}
    figures = {}
    with warnings.catch_warnings():  # the matplotlib backend of optuna.visualization is "experimental"
        warnings.simplefilter("ignore")
        ax = ovm.plot_optimization_history(study, target_name=f"validation {metric}")
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # trial numbers (0.25 steps with a few trials)
        for line in ax.get_lines():  # Optuna joins the bests with slopes, as if bests lay between trials
            if line.get_label() == "Best Value":
                line.set_drawstyle("steps-post")
                line.set_label("best so far")
                if len(complete) == 1:  # a one-point line draws nothing but its legend entry
                    line.remove()
        if len(complete) == 1:
            ax.set_xlim(complete[0].number - 1, complete[0].number + 1)
            ax.set_xticks([complete[0].number])  # not trial -1
        ax.legend(bbox_to_anchor=(1.05, 1.0), loc="upper left")
        figures["optimization_history.png"] = _figure_of(
            ax, f"study {study.study_name}: validation {metric} per complete trial")
        if len(complete) >= MIN_TRIALS_FOR_IMPORTANCES:
            # fANOVA, not Optuna 5's default PED-ANOVA: with 10 trials PED-ANOVA's top-quantile holds one trial
            # and it split importance evenly between a parameter that decided the value and one that did not
            ax = ovm.plot_param_importances(study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0),
                                            target_name=f"validation {metric}")
            figures["param_importances.png"] = _figure_of(
                ax, f"study {study.study_name}: hyperparameter importances ({len(complete)} complete trials)")
    return figures


def _figure_of(ax, title: str):
    """The figure an Optuna matplotlib plot drew on, with ``title`` for Optuna's own, sized for the MLflow
    artifact view."""
    for loc in ("left", "center", "right"):
        ax.set_title("", loc=loc)
    ax.set_title(title)
    fig = ax.figure
    fig.set_size_inches(8, 4.8)
    fig.tight_layout()
    return fig


def close(fig: Any) -> None:
    """Free a figure once it is logged (pyplot keeps every open one)."""
    _plt().close(fig)
