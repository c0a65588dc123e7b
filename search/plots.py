"""Figures a person would rather look at than read: confusion matrix, ROC curve, Pareto front."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def confusion_figure(cm: Sequence[Sequence[int]], title: str = "Confusion matrix"):
    """2x2 confusion matrix with counts and row percentages."""
    plt = _plt()
    cm = np.asarray(cm)
    fig, ax = plt.subplots(figsize=(4, 3.6), dpi=110)
    ax.imshow(cm / np.maximum(cm.sum(axis=1, keepdims=True), 1), cmap="Blues", vmin=0, vmax=1)
    for i in range(2):
        for j in range(2):
            pct = 100 * cm[i, j] / max(cm[i].sum(), 1)
            ax.text(j, i, f"{cm[i, j]}\n{pct:.1f}%", ha="center", va="center",
                    color="white" if pct > 60 else "black")
    ax.set_xticks([0, 1], ["normal", "abnormal"])
    ax.set_yticks([0, 1], ["normal", "abnormal"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def roc_figure(y: np.ndarray, prob: np.ndarray, title: str = "ROC (abnormal class)"):
    """ROC curve with its AUC."""
    from sklearn.metrics import roc_auc_score, roc_curve

    plt = _plt()
    fig, ax = plt.subplots(figsize=(4, 3.6), dpi=110)
    if len(np.unique(y)) == 2:
        fpr, tpr, _ = roc_curve(y, prob)
        ax.plot(fpr, tpr, label=f"AUC {roc_auc_score(y, prob):.3f}")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("sensitivity")
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def close(fig) -> None:
    _plt().close(fig)
