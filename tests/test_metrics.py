"""The validation-chosen decision threshold (search.metrics.best_threshold)."""

from __future__ import annotations

import numpy as np
import pytest

from search import best_threshold, binary_metrics, describe_final_model


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


def test_several_fold_rows_take_the_median_over_every_fold_of_every_row():
    """Repeated K-fold (search.fit_fold_models(repeats=R)): one row of fold labels per repeat; the threshold is
    the median of all R x K folds' F1-best thresholds, not of one row's."""
    y = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    prob = np.array([0.1, 0.2, 0.1, 0.4, 0.1, 0.6, 0.1, 0.8])  # each abnormal beat is separable at its own score
    rows = np.array([[0, 0, 1, 1, 1, 1, 1, 1],   # row 0: fold 0 best at 0.2, fold 1 at 0.4
                     [0, 0, 0, 0, 0, 0, 1, 1]])  # row 1: fold 0 best at 0.2, fold 1 at 0.8
    assert best_threshold(y, prob, rows[0]) == pytest.approx(0.3)
    assert best_threshold(y, prob, rows) == pytest.approx(0.3)  # median of 0.2, 0.4, 0.2, 0.8 (the rows: 0.3, 0.5)
    assert best_threshold(y, prob, rows[1]) == pytest.approx(0.5)
    assert best_threshold(y, prob, np.array([rows[1], rows[1], rows[0]])) == pytest.approx(0.3)  # 0.2,0.8,0.2,0.8,0.2,0.4


def test_threshold_edge_cases():
    y, p = np.array([0, 0, 1, 1]), np.array([0.1, 0.3, 0.7, 0.9])
    assert best_threshold(y, p) == 0.7
    assert best_threshold(y, p, np.array([0, 0, 1, 1])) == 0.7  # folds of one class are left out
    assert best_threshold(np.zeros(4), p) == 0.5  # no abnormal beat at all: the default


def test_the_f1_objective_scores_the_threshold_the_model_will_be_exported_with():
    """A model that separates the classes perfectly but puts every probability under 0.5 (as class-weight
    'none' models often do after a few epochs) scores 0 at 0.5 and 1 at the validation-chosen threshold:
    the search must rank configs by what they will deliver, not by their calibration."""
    import pytest

    from search.metrics import cv_objective, epoch_signal, fold_signal

    rng = np.random.default_rng(1)
    parts = [_fold(rng, 300, 60, normal_at=(0.0, 0.1), abnormal_at=(0.2, 0.4)) for _ in range(3)]
    y = np.concatenate([p[0] for p in parts])
    prob = np.concatenate([p[1] for p in parts])
    folds = np.concatenate([np.full(len(p[0]), k) for k, p in enumerate(parts)])
    value, per_fold, threshold = cv_objective("f1", y, prob, folds)
    assert value > 0.99 and len(per_fold) == 3 and min(per_fold) > 0.99  # the median fold's threshold
    assert 0.1 < threshold <= 0.4 and threshold == best_threshold(y, prob, folds)
    at_half, per_half, _ = cv_objective("f1@0.5", y, prob, folds)
    assert at_half == 0.0 and per_half == [0.0, 0.0, 0.0]
    assert cv_objective("auc", y, prob, folds)[0] == 1.0
    # one threshold for all folds (the exported model has one), not each fold's own best
    shifted = prob.copy()
    shifted[folds == 2] += 0.45  # fold 2 separates at 0.55-0.85 instead
    value, per_fold, threshold = cv_objective("f1", y, shifted, folds)
    assert min(per_fold[:2]) > 0.99 and per_fold[2] < 0.5 and value < 0.85
    # mid-fold the pruner compares the threshold-free ROC-AUC, except for the F1-at-0.5 objective
    assert fold_signal("f1", y, prob) == 1.0 and fold_signal("f1@0.5", y, prob) == 0.0
    logs = {"val_auc": 0.9, "val_precision": 0.5, "val_recall": 0.5}
    assert epoch_signal("f1", logs) == 0.9 == epoch_signal("auc", logs) and epoch_signal("f1@0.5", logs) == 0.5
    with pytest.raises(ValueError, match="unknown metric 'f2'"):
        cv_objective("f2", y, prob, folds)


def test_a_study_stored_before_the_threshold_objective_keeps_f1_at_half():
    """Settings stored without ``metric_version`` meant F1 at 0.5 by ``f1``: they read as ``f1@0.5``, so a
    resume with today's default is refused instead of mixing two objectives in one study."""
    from search import StudySettings

    old = {"dataset": "mitdb", "metric": "f1", "folds": 3, "pipeline_version": 6}
    assert StudySettings.from_dict(old).metric == "f1@0.5"
    assert StudySettings.from_dict({**old, "metric": "auc"}).metric == "auc"
    assert "metric: study has 'f1@0.5', command gives 'f1'" in StudySettings.from_dict(old).differences(
        StudySettings(folds=3, pipeline_version=6))
    now = StudySettings(folds=3)
    assert StudySettings.from_dict(now.to_dict()) == now and now.metric == "f1"


def test_a_validation_fold_of_one_class_does_not_void_the_objective():
    """Patient-grouped folds of a few records can hold no abnormal beat: its F1 counts (0, nothing to
    find), its undefined ROC-AUC is left out of the mean, and all-undefined is NaN for the caller to refuse."""
    from search.metrics import cv_objective

    rng = np.random.default_rng(2)
    (y0, p0), (y1, p1) = _fold(rng, 200, 40), _fold(rng, 200, 40)
    y = np.r_[y0, y1, np.zeros(100, int)]
    prob = np.r_[p0, p1, rng.uniform(0.0, 0.3, 100)]
    folds = np.r_[np.zeros(240), np.ones(240), np.full(100, 2)].astype(int)
    value, per_fold, _ = cv_objective("auc", y, prob, folds)
    assert value == 1.0 and np.isnan(per_fold[2])
    value, per_fold, _ = cv_objective("f1", y, prob, folds)
    assert min(per_fold[:2]) > 0.98 and per_fold[2] == 0.0
    assert np.isnan(cv_objective("auc", np.zeros(10, int), np.linspace(0, 1, 10), np.r_[np.zeros(5), np.ones(5)])[0])
    # the trial's summary over the folds leaves the undefined one out too (its NaN voided mean.roc_auc, and for
    # metric auc mean.objective, beside a trial value of 1.0)
    from types import SimpleNamespace

    from search._trial_results import fold_record, summarise_folds

    fold_of = folds.astype(np.int64)
    records = [fold_record(y[fold_of == k], SimpleNamespace(val_prob=prob[fold_of == k], seconds=1.0, validation_seconds=0.1, beats_per_s=1.0),
                           k, None, None) for k in range(3)]
    value, _, summary = summarise_folds("auc", y, prob.copy(), fold_of, records)
    assert value == 1.0 and summary["mean.objective"] == 1.0 and summary["mean.roc_auc"] == 1.0


def test_the_cli_offers_every_metric_the_objective_knows():
    """ecg_automl.cli spells the choices out (importing search there would load TensorFlow on every command)."""
    from ecg_automl.cli import _quality_metric, build_parser
    from search import METRICS

    search_cmd = next(a for a in build_parser()._subparsers._group_actions[0].choices.items() if a[0] == "search")[1]
    metric = next(a for a in search_cmd._actions if a.dest == "metric")
    # the default is decided with --objective (None: not given), and it is f1 when neither says otherwise
    assert tuple(metric.choices) == METRICS and _quality_metric(None, metric.default) == "f1"


def test_the_final_model_is_described_by_what_was_averaged() -> None:
    """The final test and the export's sidecar name the model the same way, folds x seeds included."""
    assert describe_final_model({"final_model": "folds", "members": 10, "fold_repeats": 2}) == (
        "the average of 10 models: 5 patient-grouped folds x 2 seeds")
    assert describe_final_model({"final_model": "folds", "members": 3}) == "the average of 3 patient-grouped fold models"
    assert describe_final_model({"final_model": "refit", "members": 3}).startswith("the average of 3 seeds' models")
    assert describe_final_model({"members": 1}) == "one model trained on all search patients"


@pytest.mark.parametrize("y, prob, message", [
    ([], [], "no beats"),
    ([0, 1, 0], [0.1, 0.9], "y has 3 beats but prob has 2"),
    ([0, 1], [[0.9, 0.1], [0.2, 0.8]], "must be 1-D"),
    ([0, 0, 0], [0.1, np.nan, 0.2], "1 NaN or infinite value"),  # one class: no ROC-AUC would have caught it
    ([0, 1, 1], [0.1, 0.9, np.inf], "first at beat 2"),
    (["N", "V"], [0.1, 0.9], "found 'N', 'V'"),
    ([0, 2], [0.1, 0.9], "found 2"),
])
def test_scores_that_cannot_be_measured_are_refused_by_name(y, prob, message):
    """Empty, mismatched, NaN (silently read as normal when y holds one class) or non-0/1 inputs are a
    ValueError saying what is wrong, from every metric, not a scikit-learn message or a quiet number."""
    from search.metrics import cv_objective, full_report

    for call in (lambda: binary_metrics(y, prob), lambda: best_threshold(y, prob),
                 lambda: full_report(y, prob, 0.5), lambda: cv_objective("f1", y, prob, np.zeros(len(y)))):
        with pytest.raises(ValueError, match=message):
            call()


def test_a_threshold_must_be_a_probability_and_folds_and_labels_must_match():
    y, p = np.array([0, 0, 1, 1]), np.array([0.1, 0.3, 0.7, 0.9])
    for bad in (1.5, -0.1, float("nan")):
        with pytest.raises(ValueError, match=r"threshold must be in \[0, 1\]"):
            binary_metrics(y, p, bad)
    with pytest.raises(TypeError, match="threshold must be a number"):
        binary_metrics(y, p, "0.5")
    assert binary_metrics(y, p.reshape(-1, 1), 1.0)["recall"] == 0.0  # a Keras (n, 1) output is fine
    with pytest.raises(ValueError, match="folds must give each of the 4 beats its fold"):
        best_threshold(y, p, np.array([0, 1]))
    from search.metrics import full_report

    with pytest.raises(ValueError, match="labels has 2 beats but y has 4"):
        full_report(y, p, 0.5, labels=np.array(["N", "V"]))
    assert full_report(y, p, 0.5, labels=["N", "N", "V", "V"])["by_label"]["V"]["flagged_abnormal"] == 1.0


def test_the_fold_ensemble_report_calls_the_search_threshold_a_threshold():
    """It read 'out-of-fold F1 0.5264; the search trial's was 0.440': the 0.440 is the search trial's
    threshold, not its F1 (the search's F1 is the trial's value, elsewhere)."""
    from search.metrics import format_report, full_report

    rng = np.random.default_rng(0)
    y, p = _fold(rng, 40, 10)
    report = full_report(y, p, 0.371)
    report.update(members=2, final_model="folds", member_roc_auc=[0.9, 0.8], search_threshold=0.44,
                  oof=binary_metrics(y, p, 0.371))
    text = format_report(report)
    assert "the search trial's threshold was 0.440" in text
    assert "the search trial's was" not in text


def test_the_report_counts_one_tensorflow_thread_in_the_singular():
    """The final test's report read "trained with 1 TensorFlow threads" (export's sidecar already said "thread")."""
    from search.metrics import format_report, full_report

    y, p = _fold(np.random.default_rng(0), 40, 10)
    for n, words in ((1, "trained with 1 TensorFlow thread\n"), (2, "trained with 2 TensorFlow threads\n")):
        assert words in format_report({**full_report(y, p, 0.5), "tf_threads": n}) + "\n"


def test_hyperband_compares_trials_of_any_epoch_count_at_the_same_fold():
    """Steps are ``fold * epochs_per_fold + epoch``: with Hyperband's resource in steps, a 1-epoch trial (steps 0,
    4) filled its first rung at step 4 (fold 1) and a 4-epoch trial at step 3 (fold 0), and the two were compared
    there. Counted in folds, every rung is the first epoch of the same fold for every trial."""
    import optuna

    from search.pruners import make_pruner

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    stride = 4
    study = optuna.create_study(direction="maximize", pruner=make_pruner("hyperband", stride))
    for i in range(8):
        trial = study.ask()
        for step in (k * stride + e for k in range(2) for e in range(1 if i % 2 else 4)):
            trial.report(i + step / 100, step)
            if trial.should_prune():
                break
        study.tell(trial, i)
    rungs = [{k: v for k, v in t.system_attrs.items() if k.startswith("completed_rung")} for t in study.trials[1:]]
    assert rungs and all(r == {"completed_rung_0": pytest.approx(t + stride / 100)} for t, r in enumerate(rungs, 1))


def test_a_trial_s_values_are_printed_with_their_names():
    """The search printed 'trial 0 complete: 0.1272': not which of the three quality metrics, nor for a
    latency-aware study which figure was the latency (ms) and which the size (KB)."""
    from search.metrics import describe_values

    assert describe_values("f1", [0.12724]) == "f1 0.1272"
    assert describe_values("auc", [0.9]) == "auc 0.9000"
    assert describe_values("f1@0.5", [0.71234, 0.51234, 38.42], ["quality", "latency", "size"]) == \
        "f1@0.5 0.7123, latency 0.512 ms, size 38.4 KB"
    assert describe_values("f1", [38.42, 0.7], ["size", "quality"]) == "size 38.4 KB, f1 0.7000"
