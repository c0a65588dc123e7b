"""Patient-grouped splitters: every splitter here keeps all beats of a patient on one side.

They follow scikit-learn's splitter protocol (``split(X, y, groups)``, ``get_n_splits``), so any
scikit-learn group splitter can be passed as ``cv=`` instead.
"""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

if TYPE_CHECKING:  # not imported at run time: the Pi runtime has no scikit-learn
    from sklearn.model_selection import StratifiedGroupKFold


class PatientLeakError(AssertionError):
    """A patient's beats appear on both sides of a split."""


def patient_kfold(n_splits: int = 5, *, seed: int | None = 0) -> StratifiedGroupKFold:
    """The search's cross-validation: stratified by class, grouped by patient (scikit-learn's
    ``StratifiedGroupKFold``; imported here so the Pi runtime needs no scikit-learn). ``n_splits`` defaults to 5
    as in scikit-learn; a study's folds (``StudySettings.folds``, ``--folds``) default to 3.

    ``seed`` only breaks ties: the splitter assigns patients greedily by how uneven their class balance is,
    and shuffles only patients whose balance is equally uneven, so on MIT-BIH DS1 every seed gives the same
    folds (scikit-learn 1.9)."""
    # checked here: scikit-learn refuses a seed of "0" only when split() runs, eight frames deep
    if isinstance(n_splits, bool) or not isinstance(n_splits, numbers.Integral):
        raise TypeError(f"n_splits must be a whole number of folds, not {n_splits!r}")
    if n_splits < 2:
        raise ValueError(f"n_splits must be at least 2 (patient-grouped folds), not {n_splits}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
        raise TypeError(f"seed must be a whole number or None, not {seed!r}")
    from sklearn.model_selection import StratifiedGroupKFold

    return StratifiedGroupKFold(n_splits=n_splits, shuffle=seed is not None, random_state=seed)


def check_no_leak(groups: np.ndarray, train_idx: np.ndarray, test_idx: np.ndarray) -> None:
    """Raise :class:`PatientLeakError` if any patient has beats in both index sets."""
    groups = np.asarray(groups)
    _check_group_types(groups)
    shared = np.intersect1d(np.unique(groups[train_idx]), np.unique(groups[test_idx]))
    if len(shared):
        raise PatientLeakError(f"patients on both sides of the split: {', '.join(map(str, shared[:10]))}")


def grouped_splits(cv: Any, X: Any, y: np.ndarray, groups: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (train_idx, val_idx) from ``cv`` (a scikit-learn-style splitter object, e.g. :func:`patient_kfold`),
    checking each fold for patient leakage. The arguments are checked when it is called, not at the first fold."""
    if not (callable(getattr(cv, "split", None)) and callable(getattr(cv, "get_n_splits", None))):
        # scikit-learn reads cv=5 as a KFold that ignores the patients: asked for here, the splitter is explicit
        raise TypeError(f"cv must be a splitter object with split(X, y, groups) and get_n_splits(), such as "
                        f"ecg_data.patient_kfold(5) or a scikit-learn group splitter, not {cv!r}")
    _check_groups(y, groups)
    groups = np.asarray(groups)
    n_groups = len(np.unique(groups))
    n_splits = cv.get_n_splits(X, y, groups)
    if n_groups < n_splits:
        raise ValueError(f"{n_splits} folds need at least {n_splits} patients; the data has {n_groups}")
    return _leak_checked(cv.split(X, y, groups), groups)


def _leak_checked(folds: Iterator[tuple[np.ndarray, np.ndarray]],
                  groups: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``folds``, each checked by :func:`check_no_leak` as it is drawn."""
    for train_idx, val_idx in folds:
        check_no_leak(groups, train_idx, val_idx)
        yield train_idx, val_idx


def _check_groups(y: np.ndarray, groups: np.ndarray | None) -> None:
    """ValueError unless ``groups`` gives every beat its patient (None or a short array read as one patient)."""
    if groups is None:
        raise ValueError("groups is required: the patient of every beat, what the split keeps on one side")
    if len(groups) != len(y):
        raise ValueError(f"groups has {len(groups)} entries but there are {len(y)} beats (one patient per beat)")
    _check_group_types(np.asarray(groups))


def _check_group_types(values: np.ndarray) -> None:
    """TypeError for patient ids that mix text and numbers (numpy's "'<' not supported" TypeError when it sorts
    them); numbers of several types (int, numpy int64, float) or text of several (str, numpy str_) sort fine."""
    if values.dtype != object:
        return
    kinds = {"text" if isinstance(g, (str, np.str_)) else "number" if isinstance(g, (numbers.Number, np.number))
             else type(g).__name__ for g in values.ravel()}
    if len(kinds) > 1:
        raise TypeError(f"groups mixes {' and '.join(sorted(kinds))}: give every patient id as text, or every one as "
                        f"a number")


def subsample_beats(y: np.ndarray, groups: np.ndarray, max_beats: int, *, seed: int = 0) -> np.ndarray:
    """Indices of about ``max_beats`` beats, drawn stratified by (patient, class): every patient and
    every class of every patient keeps its share (at least one beat, so rounding and rare classes can add
    a few over ``max_beats``), so groups and balance survive.

    With more (patient, class) pairs than ``max_beats`` (heartbeat CSVs without patient ids, where each beat is its
    own group; PTB-XL's 18,869 patients) not every pair can keep a beat: each class then keeps its share of
    ``max_beats``, one beat from each of that many of its pairs drawn at random (all of them, with more beats each,
    when the class has fewer pairs than its share)."""
    _check_groups(y, groups)
    if isinstance(max_beats, bool) or not isinstance(max_beats, numbers.Real):
        raise TypeError(f"max_beats must be a number of beats, not {max_beats!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):  # numpy's error for "0" is 7 frames deep
        raise TypeError(f"seed must be a whole number, not {seed!r}")
    if max_beats < 1:
        raise ValueError(f"max_beats must be at least 1, not {max_beats}")
    n = len(y)
    if max_beats >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    keys = np.char.add(np.asarray(groups).astype(str), np.char.add("|", np.asarray(y).astype(str)))
    _, inverse = np.unique(keys, return_inverse=True)
    order = np.argsort(inverse.ravel(), kind="stable")
    strata = np.split(order, np.flatnonzero(np.diff(inverse.ravel()[order])) + 1)  # per key, in key order, ascending
    if len(strata) <= max_beats:
        return _share_of_each(strata, max_beats / n, rng)
    classes = np.asarray(y)[[s[0] for s in strata]]
    chosen = []
    for c in np.unique(classes):
        members = [s for s, k in zip(strata, classes) if k == c]
        n_c = sum(len(s) for s in members)
        k_c = max(1, int(round(max_beats * n_c / n)))
        if k_c < len(members):
            pick = np.sort(rng.choice(len(members), size=k_c, replace=False))
            chosen.append(np.array([rng.choice(members[i]) for i in pick]))
        else:
            chosen.append(_share_of_each(members, k_c / n_c, rng))
    return np.sort(np.concatenate(chosen))


def _share_of_each(strata: list[np.ndarray], frac: float, rng: np.random.Generator) -> np.ndarray:
    """``frac`` of the beats of each stratum (at least one), drawn without replacement; sorted indices."""
    chosen = []
    for idx in strata:
        k = max(1, int(round(len(idx) * frac)))
        chosen.append(rng.choice(idx, size=min(k, len(idx)), replace=False))
    return np.sort(np.concatenate(chosen))
