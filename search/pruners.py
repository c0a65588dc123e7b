"""The driver's Optuna pruners over the running fold mean of a trial's validation metric."""

from __future__ import annotations

import optuna


def make_pruner(name: str = "median", epochs_per_fold: int = 0) -> optuna.pruners.BasePruner:
    """A real Optuna pruner over the running fold mean (``median``, ``hyperband`` or ``none``).

    The median pruner first compares a trial after one epoch of its second fold (``n_warmup_steps`` =
    ``epochs_per_fold``, the most epochs the space allows; steps are ``fold * epochs_per_fold + epoch``): what
    tells a config's F1 on unseen patients is how it does on a second group of patients, not more epochs on the
    first. Over 58 completed trials of the
    search-efficiency benchmark, the running validation ROC-AUC ranked the trials' objective with Spearman
    0.46 after the first epoch, 0.47 after the whole first fold and 0.64 after one epoch of the second fold
    (90 % intervals overlap: ``benchmarks/search_efficiency.py --pruner-signal``), and pruning from the first
    epoch stopped 43 of 56 trials of a 900 s study and, in another, every trial after the first three
    (docs/RESULTS.md, section 6). With 2 folds (only the first is reported) it therefore never prunes.

    Hyperband's resource is counted in folds for the same reason (``min_resource`` = ``epochs_per_fold``): its
    rungs fall at ``epochs_per_fold * 3**i``, the first epoch of fold 1, 3, 9..., a step every trial reports,
    whatever its epochs. With one step per epoch a 1-epoch trial filled its first rung with its fold-1 value
    while a 4-epoch trial filled the same rung in fold 0, and they were compared there."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=max(int(epochs_per_fold), 0))
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=max(int(epochs_per_fold), 1))
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"unknown pruner {name!r} (median, hyperband, none)")
