"""The validation-chosen decision threshold (search.metrics.best_threshold)."""

from __future__ import annotations

import numpy as np

from search import best_threshold, binary_metrics


def _fold(rng, n_normal, n_abnormal, normal_at=(0.0, 0.4), abnormal_at=(0.6, 1.0)):
    y = np.r_[np.zeros(n_normal), np.ones(n_abnormal)].astype(int)
    p = np.r_[rng.uniform(*normal_at, n_normal), rng.uniform(*abnormal_at, n_abnormal)]
    return y, p


def test_one_fold_of_unusual_patients_cannot_set_the_threshold_for_all():
    """Two folds separate at 0.4-0.6; a third holds a patient whose normal beats all score 0.95-0.99 (as
    MIT-BIH record 207's bundle-branch-block beats do for models that never saw one). Pooled, F1 is best
    above 0.99 and half the abnormal beats of the usual folds are missed; the median of the folds'
    thresholds stays where the usual folds separate."""
    rng = np.random.default_rng(0)
    parts = [_fold(rng, 900, 100), _fold(rng, 900, 100),
             (np.r_[np.zeros(800), np.ones(100)].astype(int),
              np.r_[rng.uniform(0.95, 0.99, 800), rng.uniform(0.991, 1.0, 100)])]
    y = np.concatenate([p[0] for p in parts])
    prob = np.concatenate([p[1] for p in parts])
    folds = np.concatenate([np.full(len(p[0]), k) for k, p in enumerate(parts)])
    pooled, robust = best_threshold(y, prob), best_threshold(y, prob, folds)
    assert pooled > 0.95 and 0.4 <= robust <= 0.65
    usual = folds < 2
    assert binary_metrics(y[usual], prob[usual], robust)["f1"] > 0.99
    assert binary_metrics(y[usual], prob[usual], pooled)["f1"] < 0.5


def test_threshold_edge_cases():
    y, p = np.array([0, 0, 1, 1]), np.array([0.1, 0.3, 0.7, 0.9])
    assert best_threshold(y, p) == 0.7
    assert best_threshold(y, p, np.array([0, 0, 1, 1])) == 0.7  # folds of one class are left out
    assert best_threshold(np.zeros(4), p) == 0.5  # no abnormal beat at all: the default
