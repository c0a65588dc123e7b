"""The driver's Optuna samplers: TPE for one or two objectives, NSGA-II for three, seeded per process and resume."""

from __future__ import annotations

from typing import TYPE_CHECKING

import optuna

if TYPE_CHECKING:
    from .settings import StudySettings


def make_sampler(settings: StudySettings, n_existing: int, salt: int = 0) -> optuna.samplers.BaseSampler:
    """TPE (multivariate, constant liar for parallel workers); NSGA-II for 3+ objectives.

    The seed is offset by the number of trials already in the study, so a resumed run does not replay
    the random start-up draws of the first run, and by ``salt``: processes that share a study (workers
    started together see the same number of trials) must not draw the same "random" configs.
    """
    seed = (settings.seed + 7919 * n_existing + 104729 * salt) % 2**32
    if len(settings.objectives) >= 3:
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=8)
    return tpe_sampler(seed, tpe_startup_trials(settings.folds))


def tpe_startup_trials(folds: int) -> int:
    """Random draws before TPE models the trials: 4 + folds, at most 8 (7 at the default 3 folds)."""
    return min(8, 4 + folds)


def tpe_sampler(seed: int, n_startup_trials: int) -> optuna.samplers.TPESampler:
    """TPE as the driver runs it: multivariate, and constant liar so parallel workers do not draw alike."""
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True,
                                      n_startup_trials=n_startup_trials)
