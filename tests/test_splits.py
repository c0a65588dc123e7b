"""No beat of a validation or test patient may ever reach training."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.model_selection import KFold

from ecg_data import PatientLeakError, check_no_leak, grouped_splits, patient_kfold, subsample_beats


def test_patient_kfold_never_leaks(small_mitdb):
    search = small_mitdb.search_part()
    folds = list(grouped_splits(patient_kfold(3, seed=1), search.X, search.y, search.groups))
    assert len(folds) == 3
    seen_val = set()
    for tr, va in folds:
        assert not set(search.groups[tr]) & set(search.groups[va])
        assert search.y[va].sum() > 0  # stratified: every fold has abnormal beats
        seen_val |= set(search.groups[va])
    assert seen_val == set(search.groups)  # every patient validated exactly once


def test_beat_level_split_is_caught(small_mitdb):
    """A plain (beat-level) KFold leaks patients, and the check says which."""
    search = small_mitdb.search_part()
    with pytest.raises(PatientLeakError, match="patients on both sides"):
        list(grouped_splits(KFold(3, shuffle=True, random_state=0), search.X, search.y, search.groups))


def test_search_side_never_holds_test_patients(small_mitdb):
    from search.settings import StudySettings
    from search.study import search_data

    part = search_data(small_mitdb, StudySettings(max_beats=500))
    check_no_leak(np.concatenate([part.groups, small_mitdb.test_part().groups]),
                  np.arange(len(part)), len(part) + np.arange(len(small_mitdb.test_part())))
    assert set(part.split) == {"search"}


def test_subsample_keeps_every_patient_and_class(small_mitdb):
    search = small_mitdb.search_part()
    idx = subsample_beats(search.y, search.groups, 400, seed=0)
    assert 350 <= len(idx) <= 460
    for g in np.unique(search.groups):
        for c in np.unique(search.y[search.groups == g]):
            assert ((search.groups[idx] == g) & (search.y[idx] == c)).any()
    assert len(np.unique(idx)) == len(idx)


def test_too_few_patients_for_folds(small_mitdb):
    search = small_mitdb.search_part()
    with pytest.raises(ValueError, match="need at least 9 patients"):
        list(grouped_splits(patient_kfold(9), search.X, search.y, search.groups))


def test_groups_that_do_not_give_every_beat_a_patient_are_refused(small_mitdb):
    """groups=None or a short array was counted as one patient ("2 folds need at least 2 patients; the data has
    1"); max_beats=0 returned one beat per patient and class."""
    search = small_mitdb.search_part()
    with pytest.raises(ValueError, match="groups is required"):
        list(grouped_splits(patient_kfold(2), search.X, search.y, None))
    with pytest.raises(ValueError, match=f"groups has 10 entries but there are {len(search)} beats"):
        list(grouped_splits(patient_kfold(2), search.X, search.y, search.groups[:10]))
    with pytest.raises(ValueError, match="groups has 10 entries"):
        subsample_beats(search.y, search.groups[:10], 100)
    with pytest.raises(ValueError, match="max_beats must be at least 1, not 0"):
        subsample_beats(search.y, search.groups, 0)


def test_subsample_keeps_to_max_beats_when_patients_outnumber_it():
    """With more (patient, class) pairs than ``max_beats`` -- heartbeat CSVs without patient ids, where every beat is
    its own group, or PTB-XL's 18,869 patients -- one beat of each was kept: max_beats was ignored (all 6,000 beats
    here) and the per-key scan was quadratic (about 40 s on the Kaggle file's 87,554 rows). Now each class keeps its
    share of max_beats, one beat from each of that many of its patients."""
    rng = np.random.default_rng(0)
    y = (rng.random(6000) < 0.1).astype(np.int8)
    beat_level = np.char.add("0:", np.arange(6000).astype(str))
    idx = subsample_beats(y, beat_level, 600, seed=0)
    assert 595 <= len(idx) <= 605 and len(np.unique(idx)) == len(idx)
    assert abs(y[idx].mean() - y.mean()) < 0.01
    patients = np.repeat(np.arange(3000).astype(str), 2)  # 3,000 patients of 2 beats, one class each
    y2 = np.repeat((np.arange(3000) % 4 == 0).astype(np.int8), 2)
    idx = subsample_beats(y2, patients, 1000, seed=1)
    assert 995 <= len(idx) <= 1005 and len(np.unique(patients[idx])) == len(idx)  # one beat per patient drawn
    assert abs(y2[idx].mean() - 0.25) < 0.01
    # a class with fewer patients than its share still keeps every one of them, with more beats each
    y3 = np.r_[np.ones(2000, np.int8), np.zeros(4000, np.int8)]
    groups3 = np.r_[np.repeat(np.arange(20).astype(str), 100), np.char.add("n", np.arange(4000).astype(str))]
    idx = subsample_beats(y3, groups3, 300, seed=0)
    assert set(groups3[idx][y3[idx] == 1]) == {str(i) for i in range(20)} and 95 <= y3[idx].sum() <= 105
