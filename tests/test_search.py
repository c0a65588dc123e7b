"""The Optuna driver end to end on real MIT-BIH beats: a tiny study, failed trials, resume after
Ctrl-C, MLflow runs 1:1 with Optuna trials, and KerasTuner over the same space."""

from __future__ import annotations

import json
import logging
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from conftest import ROOT, SMALL_RECORDS, run_cli

from search import StudySettings, Tracker, TrackingConfig, run_search
from spaces import SearchSpace

# One tiny config: searched over two values only, 1 epoch, so a trial takes seconds on 2 cores.
TINY = {
    "input_length": {"type": "categorical", "choices": [128, 192]}, "rr_features": True,
    "stem_filters": 8, "res_blocks": 1, "conv_filters": {"type": "int", "low": 8, "high": 16, "step": 8},
    "kernel_size": 5, "pool": "max", "conv_dropout": 0.0, "lstm_units": 8, "lstm_layers": 1,
    "lstm_bidirectional": False, "lstm_downsample": 8, "dense_layers": 1, "dense_units": 16,
    "dense_dropout": 0.0, "optimizer": "adam", "learning_rate": {"type": "float", "low": 0.001, "high": 0.01, "log": True},
    "batch_size": 128, "epochs": 1, "class_weight": "balanced",
}


def tiny_space_file(tmp_path: Path) -> Path:
    p = tmp_path / "tiny.yaml"
    p.write_text(yaml.safe_dump({"name": "tiny", "data": {"fs": 180, "window": 192}, "params": TINY}))
    return p


def tiny_settings(tmp_path: Path, **kw) -> StudySettings:
    space = SearchSpace.load(tiny_space_file(tmp_path))
    return StudySettings(dataset="mitdb", space_yaml=space.to_yaml(), folds=2, seed=1, max_beats=800,
                         records=SMALL_RECORDS, **kw)


def fake_keras_tuner_training(monkeypatch, values: list[float]) -> None:
    """The KerasTuner engine's training replaced by an untrained prediction and its trials' values by ``values``
    (in turn): for tests of what the engine writes and records, not of what it learns."""
    import types

    import search.keras_tuner_engine as kte

    values = iter(values)

    def summarise_folds(metric, y, oof, fold_of, fold_metrics):
        value = next(values)
        for m in fold_metrics:
            m["objective"] = value
        return value, 0.5, {"mean.f1": value}

    def fit(config, train, val, seed, on_epoch_end=None, verbose=0):
        if on_epoch_end is not None:  # one epoch's Keras logs
            on_epoch_end(0, {"loss": 0.5, "val_auc": 0.75})
        return types.SimpleNamespace(val_prob=np.full(len(val), 0.5), seconds=0.1, validation_seconds=0.01,
                                     beats_per_s=10.0, model=None)

    monkeypatch.setattr(kte, "fit", fit)
    monkeypatch.setattr(kte, "summarise_folds", summarise_folds)


def second_keras_tuner_trial_diverges(monkeypatch) -> None:
    """After :func:`fake_keras_tuner_training`: the engine's second trial fails ("loss became nan at epoch 1")."""
    import search.keras_tuner_engine as kte

    summarise, calls = kte.summarise_folds, []

    def second_trial_diverges(*args):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("loss became nan at epoch 1")
        return summarise(*args)

    monkeypatch.setattr(kte, "summarise_folds", second_trial_diverges)


def tracking(tmp_path: Path) -> TrackingConfig:
    return TrackingConfig(f"sqlite:///{tmp_path / 'mlflow.db'}", (tmp_path / "art").as_uri(), "test")


def mlflow_trial_runs(tmp_path: Path, study) -> dict[int, object]:
    tracker = Tracker(tracking(tmp_path))
    return tracker.trial_runs(study.user_attrs["mlflow_parent_run_id"])


def test_study_runs_logs_and_tests_on_held_out_patients(tmp_path, capsys):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"

    def flaky_gate(config, trial):  # the study must survive a failing trial and record why
        if trial.number == 1:
            raise RuntimeError("simulated failure in trial 1")
        return {}

    result = run_search("t1", tiny_settings(tmp_path, final_members=2), n_trials=3, storage=storage, tracking=tracking(tmp_path),
                        out_dir=tmp_path / "runs", progress=False, gates=[flaky_gate], pruner="none")
    study = result.study
    states = [t.state.name for t in study.trials]
    assert states.count("COMPLETE") == 3 and states.count("FAIL") == 1
    failed = [t for t in study.trials if t.state.name == "FAIL"][0]
    assert failed.user_attrs["fail_reason"] == "RuntimeError: simulated failure in trial 1"

    # MLflow: exactly one nested run per Optuna trial, with matching state, params and metrics
    runs = mlflow_trial_runs(tmp_path, study)
    assert sorted(runs) == sorted(t.number for t in study.trials)
    for t in study.trials:
        run = runs[t.number]
        assert run.data.tags["optuna.state"] == t.state.name
        assert run.data.tags["space"] == "tiny"  # the space's name: `tags.space = 'tiny'` finds its runs
        # which of its three F1s the search ranks by: the run's description in the UI, and a tag to filter on
        assert run.data.tags["objective.metric"] == "f1"
        assert "`objective.quality`: the abnormal class's F1 at the decision threshold chosen" in \
            run.data.tags["mlflow.note.content"]
        assert run.info.status == {"COMPLETE": "FINISHED", "FAIL": "FAILED"}[t.state.name]
        if t.state.name == "COMPLETE":
            assert float(run.data.params["learning_rate"]) == pytest.approx(t.params["learning_rate"])
            assert run.data.metrics["objective.quality"] == pytest.approx(t.value)
            assert "fold.f1" in run.data.metrics and "fold0.loss" in run.data.metrics
            # the threshold the trial chose (what export ships) and its summary over the folds
            assert run.data.metrics["threshold"] == pytest.approx(t.user_attrs["threshold"])
            assert {"mean.f1", "mean.roc_auc", "oof_tuned.f1"} <= set(run.data.metrics)
        else:
            assert "simulated failure" in run.data.tags["fail_reason"]
    tracker = Tracker(tracking(tmp_path))
    art = {a.path for a in tracker.client.list_artifacts(runs[0].info.run_id)}
    assert {"confusion_matrix.png", "roc.png", "model"} <= art
    curve = tracker.client.get_metric_history(runs[0].info.run_id, "fold0.loss")
    assert len(curve) == 1  # one point per epoch

    # final test on DS2 patients, logged on the parent run
    final = result.final
    assert final["test_patients"] == 3 and final["train_patients"] == 5
    assert 0 <= final["abnormal"]["f1"] <= 1 and 0.5 < final["abnormal"]["roc_auc"] <= 1
    # tested at the threshold the search chose on its validation folds, never one chosen on the test beats
    assert final["abnormal"]["threshold"] == pytest.approx(study.best_trial.user_attrs["threshold"])
    assert sum(map(sum, final["confusion_matrix"])) == final["n"]
    parent = tracker.client.get_run(study.user_attrs["mlflow_parent_run_id"])
    assert parent.data.metrics["test.roc_auc"] == pytest.approx(final["abnormal"]["roc_auc"])
    assert parent.data.tags["space"] == "tiny"
    assert "`test.*`: the final test" in parent.data.tags["mlflow.note.content"]
    from ecg_automl import git_source  # the code's commit, where it runs from a checkout (the UI shows it)
    assert parent.data.tags.get("mlflow.source.git.commit") == (git_source() or {}).get("commit")
    assert Path(final["model_path"]).exists()
    # the logged report says which trial and config it tested (it did not: only the .txt's title named the trial)
    logged = json.loads(Path(tracker.client.download_artifacts(parent.info.run_id, "final_test.json",
                                                                str(tmp_path))).read_text())
    assert logged["trial"] == final["trial"] == study.best_trial.number
    assert logged["config"] == study.best_trial.user_attrs["config"]
    # the study's own plot of how the search went (importances need more trials than 3)
    parent_art = {a.path for a in tracker.client.list_artifacts(parent.info.run_id)}
    assert "optimization_history.png" in parent_art and "param_importances.png" not in parent_art
    out = capsys.readouterr().out
    assert "confusion matrix" in out and "abnormal" in out
    assert "final model (the average of 2 seeds' models, each trained on all search patients, 1 epoch;" in out
    # final_members=2: the final model is one file holding both seeds' models, averaged
    import keras

    model = keras.models.load_model(final["model_path"], safe_mode=True)
    assert final["members"] == 2 and len(final["member_roc_auc"]) == 2
    assert {"m0_abnormal", "m1_abnormal"} <= {layer.name for layer in model.layers}


def test_trials_that_keep_failing_stop_the_run_and_keep_the_study(tmp_path):
    """A cause outside the configs (here a gate that always fails, as an unreachable device would) must not
    fail trials forever: failed trials do not count towards --trials, so the run stops after a few in a row."""
    from search import TrialsKeepFailingError

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"

    def broken_gate(config, trial):
        raise ConnectionError("device went away")

    with pytest.raises(TrialsKeepFailingError, match="after 3 failed trials in a row .*device went away.*resume"):
        run_search("failing", tiny_settings(tmp_path), n_trials=2, storage=storage, tracking=None, progress=False,
                   gates=[broken_gate], pruner="none", final=False, max_failures_in_a_row=3)
    study = optuna.load_study(study_name="failing", storage=storage)
    assert [t.state.name for t in study.trials] == ["FAIL"] * 3
    # nothing to export, said in words (not Optuna's "Record does not exist.")
    from ecg_automl.tflite import TFLiteError
    from ecg_automl.tflite.export import export_trial

    with pytest.raises(TFLiteError, match=r"'failing' has no completed trial to export \(3 trials: fail\)"):
        export_trial("failing", storage, "best", "int8", tmp_path / "m.tflite")


def test_a_killed_runs_trial_is_waited_for_with_a_message_then_redone(tmp_path, capsys, caplog):
    """A trial left RUNNING by a killed process (SIGKILL: no handler ran) looks like another worker's. The rerun
    says what it waits for and for how long, and redoes the trial once its heartbeat is stale."""
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    settings = tiny_settings(tmp_path)
    run_search("killed", settings, n_trials=0, storage=storage, tracking=None, progress=False)
    # with the MLflow options a worker needs to log where the search does (it failed "logs to MLflow experiment 'X',
    # not 'ecg-automl'" after a search with --experiment X)
    assert (f"study 'killed' is ready and holds no trial (--trials 0): workers join it with `ecg-automl worker --study "
            f"killed --storage {storage} --trials N --no-mlflow`") in capsys.readouterr().out
    from search.study import _tracking_options

    assert _tracking_options(Tracker(TrackingConfig("http://u:pw@host:5000", None, "my exp"))) == (
        " --tracking-uri 'http://u:***@host:5000' --experiment 'my exp'")
    study = optuna.load_study(study_name="killed", storage=storage)
    orphan = study.ask()  # what the killed process left: RUNNING, one heartbeat, then silence
    study._storage.record_heartbeat(orphan._trial_id)
    result = run_search("killed", settings, n_trials=1, storage=storage, tracking=None, progress=False, final=False,
                        heartbeat=1)
    out = " ".join(caplog.text.split())  # progress=False: the note is the search logger's warning
    assert f"waiting for trial(s) {orphan.number}, running in another process" in out
    assert "failed after 4 s without a heartbeat and redone" in out
    states = [t.state.name for t in result.study.trials]
    assert states[orphan.number] == "FAIL" and states.count("COMPLETE") == 1


def test_a_trial_whose_loss_turns_nan_fails_saying_so_and_the_study_goes_on(tmp_path, monkeypatch):
    """A model whose training loss becomes NaN (TrainingDiverged) fails its trial with that reason, in Optuna
    and in MLflow, and the study goes on to the trials it was asked for. A real model could not be made to
    diverge (a learning rate must be under 1), so the first model built gets a loss that is NaN."""
    import search.training as training

    real, built = training.build_model, []

    def build_model(config, **kw):
        model = real(config, **kw)
        built.append(model)
        if len(built) == 1:  # trial 0's first fold
            model.compile(optimizer="adam", loss=lambda y, p: (y + p) * float("nan"))
        return model

    monkeypatch.setattr(training, "build_model", build_model)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    result = run_search("nan", tiny_settings(tmp_path), n_trials=2, storage=storage, tracking=tracking(tmp_path),
                        out_dir=tmp_path / "runs", progress=False, pruner="none", final=False)
    trials = result.study.trials
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE", "COMPLETE"]
    assert trials[0].user_attrs["fail_reason"] == "TrainingDiverged: loss became nan at epoch 1"
    assert len(built) == 1 + 2 * 2  # the failed trial stopped at its first fold; two trials of two folds
    run = mlflow_trial_runs(tmp_path, result.study)[0]
    assert run.info.status == "FAILED" and run.data.tags["fail_reason"] == trials[0].user_attrs["fail_reason"]


def test_the_fold_models_averaged_score_what_their_members_average_at_their_own_threshold(tmp_path, small_mitdb):
    """fit_fold_models: K models on patient-grouped folds (each search patient validated once per repeat, by the
    one model of that repeat that did not see it), repeated with other seeds; the threshold chosen on the
    repeats' mean out-of-fold predictions, and one model that outputs the mean of all R x K models."""
    from search import best_threshold, fit_fold_models, predict

    config = SearchSpace.load(tiny_space_file(tmp_path)).config_from_params(
        {"input_length": 192, "conv_filters": 8, "learning_rate": 0.005})
    data = small_mitdb.search_part()
    data = data.subset(np.arange(0, len(data), 6))
    ens = fit_fold_models(config, data, folds=2, seed=3, repeats=2)
    assert len(ens.fits) == len(ens.splits) == 4 and ens.fold_of.shape == ens.oof_by_repeat.shape == (2, len(data))
    for r in range(2):
        (tr0, va0), (tr1, va1) = ens.splits[2 * r:2 * r + 2]
        assert not set(data.groups[va0]) & set(data.groups[va1])  # patient-grouped
        assert sorted([*va0, *va1]) == list(range(len(data))) and (ens.fold_of[r] >= 0).all()
        assert np.allclose(ens.oof_by_repeat[r][va1], ens.fits[2 * r + 1].val_prob)
    assert not np.allclose(ens.oof_by_repeat[0], ens.oof_by_repeat[1])  # other training seeds
    assert np.allclose(ens.oof, ens.oof_by_repeat.mean(axis=0))
    assert ens.threshold == best_threshold(data.y, ens.oof, ens.fold_of)
    test = small_mitdb.test_part()
    test = test.subset(np.arange(0, len(test), 10))
    members = np.mean([predict(f.model, config, test) for f in ens.fits], axis=0)
    assert np.allclose(predict(ens.model, config, test), members, atol=1e-5)
    with pytest.raises(ValueError, match="at least 2 folds"):
        fit_fold_models(config, data, folds=1)
    with pytest.raises(ValueError, match="repeats must be at least 1"):
        fit_fold_models(config, data, folds=2, repeats=0)


def test_fold_models_repeats_split_by_the_splitters_given(tmp_path, small_mitdb):
    """fit_fold_models(cv=[...]): one splitter per repeat, so repeats can differ in their patients too (on MIT-BIH
    the default StratifiedGroupKFold gives every repeat the same folds); a list of the wrong length or a splitter
    of another fold count is refused before anything trains."""
    from sklearn.model_selection import GroupKFold

    from ecg_data import patient_kfold
    from search import fit_fold_models

    config = SearchSpace.load(tiny_space_file(tmp_path)).config_from_params(
        {"input_length": 192, "conv_filters": 8, "learning_rate": 0.005})
    config["epochs"] = 1
    data = small_mitdb.search_part()
    data = data.subset(np.arange(0, len(data), 12))
    cv = [patient_kfold(2, seed=3), GroupKFold(2, shuffle=True, random_state=4)]
    ens = fit_fold_models(config, data, folds=2, seed=3, repeats=2, cv=cv)
    for r, splitter in enumerate(cv):
        expected = [va for _, va in splitter.split(data.X, data.y, data.groups)]
        assert [list(va) for _, va in ens.splits[2 * r:2 * r + 2]] == [list(va) for va in expected]
    assert not np.array_equal(ens.fold_of[0], ens.fold_of[1])  # the repeats' patient folds differ
    with pytest.raises(ValueError, match="cv has 1 splitters for 2 repeats"):
        fit_fold_models(config, data, folds=2, repeats=2, cv=cv[:1])
    with pytest.raises(ValueError, match="repeat 0 gives 3 folds, not 2"):
        fit_fold_models(config, data, folds=2, cv=[patient_kfold(3)])
    with pytest.raises(TypeError, match="cv must be a splitter object"):
        fit_fold_models(config, data, folds=2, cv=[2])
    # a splitter whose validation parts miss beats (or repeat them) trained every fold model, then failed on NaN
    # out-of-fold "scores of a diverged model"; it is refused before training
    from sklearn.model_selection import GroupShuffleSplit

    with pytest.raises(ValueError, match=r"the splitter of repeat 0 validates \d+ beats in no fold and \d+ in more than one"):
        fit_fold_models(config, data, folds=2, cv=[GroupShuffleSplit(2, test_size=0.25, random_state=0)])


def test_final_model_folds_is_tested_and_exported_with_its_own_threshold(tmp_path, capsys):
    """--final-model folds: the final test scores the average of the fold models at the threshold chosen on
    their out-of-fold predictions, and export writes that model with that threshold."""
    import json

    from ecg_automl.tflite.export import export_trial

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    result = run_search("tf", tiny_settings(tmp_path, final_model="folds"), n_trials=1, storage=storage,
                        tracking=None, out_dir=tmp_path / "runs", progress=True, pruner="none")
    final, best = result.final, result.study.best_trial
    assert final["final_model"] == "folds" and final["members"] == 2 and len(final["member_roc_auc"]) == 2
    assert final["search_threshold"] == best.user_attrs["threshold"]
    assert final["abnormal"]["threshold"] == final["oof"]["threshold"]
    assert len(final["fold_train_beats"]) == 2 and sum(final["fold_train_beats"]) == final["train_beats"]
    captured = capsys.readouterr()
    assert "2 patient-grouped fold models" in captured.out and "out-of-fold predictions" in captured.out
    assert "final model" in captured.err and "model 2/2, epoch 1/1" in captured.err  # the final's progress bar
    meta = export_trial("tf", storage, "best", "fp32", tmp_path / "m.tflite", verify_beats=300, runs=20)
    assert meta["members"] == 2 and "fold models" in meta["model_origin"]
    assert meta["threshold"] == final["abnormal"]["threshold"]
    assert json.loads((tmp_path / "m.json").read_text())["threshold"] == final["abnormal"]["threshold"]


def test_a_study_resumes_with_its_records_in_another_order(tmp_path, cli_env):
    """Every reader takes --records as a set, but a resume compared the lists as typed: the same records in
    another order, or one named twice, were "other settings" and the study was refused."""
    storage = f"sqlite:///{tmp_path / 'o.db'}"
    base = ["search", "--study", "r", "--no-mlflow", "--storage", storage, "--trials", "0", "--quiet"]
    run_cli([*base, "--records", "101,106,119,100,213"], tmp_path, cli_env, timeout=300)
    proc = run_cli([*base, "--records", "213,100,101,106,119,101"], tmp_path, cli_env, check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    stored = optuna.load_study(study_name="r", storage=storage).user_attrs["settings"]["records"]
    assert stored == ["100", "101", "106", "119", "213"]
    # a study stored with its records as typed compares equal too
    stored_as_typed = StudySettings.from_dict({"records": ["213", "100"], "metric_version": 2})
    assert stored_as_typed.differences(StudySettings(records=["100", "213"])) == []


def test_trials_of_a_space_that_searches_epochs_report_each_fold_from_the_same_step(tmp_path, small_mitdb):
    """Steps were ``fold * the trial's epochs + epoch``: with epochs searched over 1 and 2, a 1-epoch trial's second
    fold reported at step 1, where a 2-epoch trial was still in its first fold, so the pruner compared them at
    different points (and its warm-up, the fewest epochs, let it prune 2-epoch trials inside their first fold)."""
    from ecg_data import patient_kfold
    from search import CVObjective
    from search.study import _epochs_per_fold

    space = SearchSpace.load(tiny_space_file(tmp_path)).with_overrides(
        epochs={"type": "categorical", "choices": [1, 2]})
    data = small_mitdb.search_part()
    data = data.subset(np.flatnonzero(np.isin(data.groups, ["106", "119", "208"])))
    data = data.subset(np.arange(0, len(data), 8))
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    for epochs in (1, 2):
        study.enqueue_trial({"epochs": epochs})
    study.optimize(CVObjective(data, space, patient_kfold(3, seed=0)), n_trials=2)
    steps = {t.params["epochs"]: list(t.intermediate_values) for t in study.trials}
    assert steps == {1: [0, 2], 2: [0, 1, 2, 3]}  # every trial's second fold from step 2 (the last is not reported)
    assert _epochs_per_fold(StudySettings(space_yaml=space.to_yaml())) == 2  # the median pruner's warm-up: fold 2


def test_a_draw_whose_model_cannot_be_built_is_pruned_before_it_runs(tmp_path, small_mitdb):
    """A space may hold draws too short for their poolings beside buildable ones (the schema refuses only a space
    with none): each failed in Keras ("Computed output size would be zero or negative"), and ten in a row stopped the
    search as if the setup were broken. Such a draw is now pruned, saying why, before its gate and training."""
    from ecg_data import patient_kfold
    from search import CVObjective

    space = SearchSpace.load(tiny_space_file(tmp_path)).with_overrides(
        input_length={"type": "categorical", "choices": [16, 128]}, res_blocks={"type": "int", "low": 1, "high": 5})
    data = small_mitdb.search_part()
    data = data.subset(np.flatnonzero(np.isin(data.groups, ["106", "119"])))
    timed = []
    study = optuna.create_study(direction="maximize")
    for blocks in (5, 4):
        study.enqueue_trial({"input_length": 16, "res_blocks": blocks})
    study.optimize(CVObjective(data, space, patient_kfold(2, seed=0), gates=[lambda c, t: timed.append(c) or {}]),
                   n_trials=2)
    short, fits = study.trials
    assert short.state.name == "PRUNED" and timed[0]["res_blocks"] == 4 and len(timed) == 1
    assert short.user_attrs["prune_reason"] == ("input_length 16 is too short for res_blocks 5 (each block halves the "
                                                "window: at least 32 samples needed); this draw cannot be built")
    assert "fold_metrics" not in short.user_attrs
    assert fits.state.name == "COMPLETE"  # 16 samples take 4 blocks (16 -> 8 -> 4 -> 2 -> 1)
    from spaces import why_config_cannot_build

    assert "too short for lstm_downsample 8" in why_config_cannot_build(
        {"input_length": 4, "res_blocks": 1, "lstm_downsample": 8})
    assert why_config_cannot_build({"input_length": 8, "res_blocks": 3, "lstm_downsample": 8}) is None


def test_contradicting_final_model_options_are_refused():
    with pytest.raises(ValueError, match="use one or the other"):
        StudySettings(final_model="folds", final_members=3)
    with pytest.raises(ValueError, match="unknown final model 'bagged'"):
        StudySettings(final_model="bagged")
    assert StudySettings(folds=5, final_model="folds").n_final_members == 5
    assert StudySettings(folds=5, final_model="folds", fold_repeats=2).n_final_members == 10
    with pytest.raises(ValueError, match="needs final_model='folds'"):
        StudySettings(fold_repeats=2)
    assert StudySettings(folds=5, final_members=2).n_final_members == 2
    # a study stored before the setting existed reads as the refit it was
    assert StudySettings.from_dict({"folds": 3, "final_members": 2}).final_model == "refit"


def test_a_hopeless_trial_is_pruned_after_its_first_epoch(tmp_path, small_mitdb):
    """The running fold mean is reported every epoch (from Keras' validation pass), so a pruner can stop
    a trial mid-fold; never during the last fold."""
    from ecg_data import patient_kfold
    from search import CVObjective

    space = SearchSpace.load(tiny_space_file(tmp_path)).with_overrides(epochs=2)
    data = small_mitdb.search_part()
    data = data.subset(np.flatnonzero(np.isin(data.groups, ["106", "119", "208"])))
    data = data.subset(np.arange(0, len(data), 4))
    objective = CVObjective(data, space, patient_kfold(2, seed=0))
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=1.5))
    study.optimize(objective, n_trials=1)
    t = study.trials[0]
    assert t.state.name == "PRUNED" and list(t.intermediate_values) == [0]
    assert t.user_attrs["prune_reason"].endswith("after fold 1/2, epoch 1/2")
    assert "fold_metrics" not in t.user_attrs  # stopped inside the first fold
    assert {len(v) for v in t.user_attrs["epoch_curves"].values()} == {1}  # its one epoch's curves are kept
    # with nothing to prune, every epoch of every fold but the last is reported
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    study.optimize(objective, n_trials=1)
    t = study.trials[0]
    assert t.state.name == "COMPLETE" and list(t.intermediate_values) == [0, 1]
    assert all(0 <= v <= 1 for v in t.intermediate_values.values())
    curves = t.user_attrs["epoch_curves"]  # what sync draws in MLflow after an outage: every epoch of every fold
    assert {"fold0.loss", "fold0.val_auc", "fold1.loss", "fold1.val_loss"} <= set(curves)
    assert {len(v) for v in curves.values()} == {2} and all(isinstance(x, float) for v in curves.values() for x in v)


def test_curves_too_long_for_a_mysql_text_column_stay_in_mlflow_only(tmp_path, small_mitdb, monkeypatch, caplog):
    """A trial's curves are one study attribute, which MySQL stores in a 65,535-byte TEXT column: a long training
    (about 147 epochs with 5 folds) made the write, and the trial, fail. Past CURVES_MAX_CHARS the study keeps
    what fitted, says so once, and the trial goes on; MLflow still gets every epoch. The cap is lowered here to
    about one fold's worth (one fold-epoch is about 290 characters here, all four about 700)."""
    import logging

    import search._trial_results as tr
    from ecg_data import patient_kfold
    from search import CVObjective

    caplog.set_level(logging.WARNING, logger="search")
    monkeypatch.setattr(tr, "CURVES_MAX_CHARS", 400)
    logged: list[tuple[dict, int | None]] = []

    class Tracker:  # records what MLflow would get
        lost = 0  # calls that did not reach the store

        def start_trial(self, *args, **kwargs):
            return "run"

        def log_metrics(self, run_id, metrics, step=None):
            logged.append((metrics, step))

        def __getattr__(self, name):  # figures, model, tags: not checked here
            return lambda *args, **kwargs: None

    space = SearchSpace.load(tiny_space_file(tmp_path)).with_overrides(epochs=2)
    data = small_mitdb.search_part()
    data = data.subset(np.flatnonzero(np.isin(data.groups, ["106", "119", "208"])))
    objective = CVObjective(data.subset(np.arange(0, len(data), 4)), space, patient_kfold(2, seed=0),
                            tracker=Tracker(), parent_run_id="parent")
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    study.optimize(objective, n_trials=1)
    t = study.trials[0]
    assert t.state.name == "COMPLETE"
    full: dict[str, list[float]] = {}  # every epoch, as MLflow got them
    for metrics, step in logged:
        for k, v in metrics.items():
            if k.startswith("fold") and k[4].isdigit():
                assert step == len(full.setdefault(k, []))
                full[k].append(v)
    assert {len(v) for v in full.values()} == {2} and len(full) == 16  # 2 folds x 8 metrics x 2 epochs
    kept = t.user_attrs["epoch_curves"]
    assert 0 < sum(map(len, kept.values())) < 32 and tr.curves_fit_in_study(kept)
    for k, values in kept.items():  # what the study kept is the start of each curve
        assert values == pytest.approx(full[k][:len(values)], rel=1e-6)
    fold = max(int(k[4]) for k in kept)
    epochs = len(kept[f"fold{fold}.loss"])
    where = f"fold {fold + 1}, epoch {epochs + 1}" if epochs < 2 else f"fold {fold + 2}, epoch 1"
    notes = [r.getMessage() for r in caplog.records if "not kept in the study" in r.getMessage()]
    assert notes == [f"trial 0: its per-epoch curves from {where} on are not kept in the study (over 400 "
                     "characters, more than a MySQL TEXT column may hold); MLflow has them as they are logged, but "
                     "`ecg-automl sync` cannot restore them after a tracking outage"]


def test_a_trial_whose_curve_points_did_not_reach_mlflow_says_so_for_sync(tmp_path, small_mitdb):
    """A store unreachable for one epoch leaves a gap inside a curve, which `sync` cannot see without asking for
    every curve's history: the trial records that some points were lost (CURVES_LOST), and only then."""
    from ecg_data import patient_kfold
    from search import CVObjective
    from search.tracking import CURVES_LOST, FOLDS_LOST

    class Tracker:
        def __init__(self, lose_step: int | None, prefix: str = "fold1."):
            self.lose_step, self.prefix, self.lost = lose_step, prefix, 0

        def start_trial(self, *args, **kwargs):
            return "run"

        def log_metrics(self, run_id, metrics, step=None):
            if step == self.lose_step and any(k.startswith(self.prefix) for k in metrics):
                self.lost += 1  # as Tracker._safe counts a failed or skipped call

        def __getattr__(self, name):
            return lambda *args, **kwargs: None

    space = SearchSpace.load(tiny_space_file(tmp_path)).with_overrides(epochs=2)
    data = small_mitdb.search_part()
    data = data.subset(np.flatnonzero(np.isin(data.groups, ["106", "119", "208"])))
    data = data.subset(np.arange(0, len(data), 4))
    for lose_step, flagged in ((0, True), (None, False)):
        objective = CVObjective(data, space, patient_kfold(2, seed=0), tracker=Tracker(lose_step),
                                parent_run_id="parent")
        study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
        study.optimize(objective, n_trials=1)
        assert study.trials[0].user_attrs.get(CURVES_LOST, False) is flagged
        assert study.trials[0].user_attrs.get(FOLDS_LOST, False) is False  # no fold.* lost
    # a fold's metrics (fold.*, step = the fold) lost: FOLDS_LOST, for `sync` to log the folds the run lacks
    objective = CVObjective(data, space, patient_kfold(2, seed=0), tracker=Tracker(1, prefix="fold."),
                            parent_run_id="parent")
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    study.optimize(objective, n_trials=1)
    assert study.trials[0].user_attrs[FOLDS_LOST] is True and not study.trials[0].user_attrs.get(CURVES_LOST)
    # fold.objective, logged per fold once every fold is done (by log_trial_results), counts too
    objective = CVObjective(data, space, patient_kfold(2, seed=0), tracker=Tracker(1, prefix="fold.objective"),
                            parent_run_id="parent")
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    study.optimize(objective, n_trials=1)
    assert study.trials[0].user_attrs[FOLDS_LOST] is True


def test_a_keras_tuner_trial_s_curves_too_long_for_the_study_are_left_out(tmp_path, monkeypatch, caplog):
    """The same cap for a KerasTuner trial, recorded in the study once it is done: its curves are left out whole,
    said once, and the trial is recorded (the write failed it on MySQL)."""
    import logging

    import search._trial_results as tr
    from search.keras_tuner_engine import run_keras_tuner

    caplog.set_level(logging.WARNING, logger="search")
    monkeypatch.setattr(tr, "CURVES_MAX_CHARS", 200)
    out = run_keras_tuner("kt-cap", tiny_settings(tmp_path), tuner="random", n_trials=1, tracking=None,
                          out_dir=tmp_path, progress=False, storage=f"sqlite:///{tmp_path / 'optuna.db'}", final=False)
    t = out["study"].trials[0]
    assert t.state.name == "COMPLETE" and "epoch_curves" not in t.user_attrs and len(t.user_attrs["fold_metrics"]) == 2
    assert [r.getMessage() for r in caplog.records if "not kept in the study" in r.getMessage()] == [
        "trial 0: its per-epoch curves from fold 1, epoch 1 on are not kept in the study (over 200 characters, more "
        "than a MySQL TEXT column may hold); MLflow has them as they are logged, but `ecg-automl sync` cannot "
        "restore them after a tracking outage"]


def test_a_keras_tuner_trial_whose_curve_points_did_not_reach_mlflow_says_so_for_sync(tmp_path, monkeypatch):
    """As a driver trial does: the second fold's epoch is lost (the store away), so the recorded trial carries
    CURVES_LOST and both folds' curves, for `sync` to fill the gap."""
    import search.keras_tuner_engine as kte
    from search.tracking import CURVES_LOST

    fake_keras_tuner_training(monkeypatch, [0.7])
    real = Tracker.log_metrics

    def log_metrics(self, run_id, metrics, step=0):
        if "fold1.loss" in metrics:
            self.skipped += 1  # as _safe counts a call skipped while the store is unreachable
            return None
        return real(self, run_id, metrics, step)

    monkeypatch.setattr(Tracker, "log_metrics", log_metrics)
    out = kte.run_keras_tuner("kt-lost", tiny_settings(tmp_path), tuner="random", n_trials=1,
                              tracking=tracking(tmp_path), out_dir=tmp_path, progress=False,
                              storage=f"sqlite:///{tmp_path / 'optuna.db'}", final=False)
    t = out["study"].trials[0]
    assert t.user_attrs[CURVES_LOST] is True
    assert t.user_attrs["epoch_curves"] == {"fold0.loss": [0.5], "fold0.val_auc": [0.75], "fold1.loss": [0.5],
                                            "fold1.val_auc": [0.75]}


def test_sync_of_a_keras_tuner_search_made_with_no_mlflow_logs_its_trials_as_the_search_would(tmp_path, monkeypatch):
    """A KerasTuner search with --no-mlflow, then `sync`: the runs it made logged the value as objective_0 (the
    driver's as objective.quality) with no engine, KerasTuner trial id or worker tag, which the search's own
    runs carry."""
    import os
    import socket

    import search.keras_tuner_engine as kte

    fake_keras_tuner_training(monkeypatch, [0.7])
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    out = kte.run_keras_tuner("kt-offline", tiny_settings(tmp_path), tuner="random", n_trials=1, tracking=None,
                              out_dir=tmp_path, progress=False, storage=storage, final=False)
    study = out["study"]
    Tracker(tracking(tmp_path)).sync(study, study_run=True)
    (run,) = mlflow_trial_runs(tmp_path, optuna.load_study(study_name="kt-offline", storage=storage)).values()
    assert run.data.metrics["objective.quality"] == pytest.approx(0.7) and "objective.objective_0" not in \
        run.data.metrics
    tags = run.data.tags
    assert tags["engine"] == "keras-tuner" and tags["keras_tuner.trial_id"] == study.trials[0].user_attrs[
        "keras_tuner.trial_id"]
    assert tags["worker"] == f"{socket.gethostname()}:{os.getpid()}" and tags["objective.metric"] == "f1"


@pytest.mark.parametrize("stop, status", [(KeyboardInterrupt(), "KILLED"), (RuntimeError("disk full"), "FAILED")])
def test_a_keras_tuner_search_stopped_in_its_final_model_closes_its_study_run(tmp_path, monkeypatch, stop, status):
    """Ctrl-C (or an error) while the KerasTuner engine made the final model left the study's MLflow run RUNNING,
    and `ecg-automl sync` then ended it FINISHED, with no final model made; the driver's ends KILLED."""
    import search.keras_tuner_engine as kte

    def final(*args, **kwargs):
        raise stop

    monkeypatch.setattr(kte, "run_final", final)
    with pytest.raises(type(stop)):
        kte.run_keras_tuner("kt-stop", tiny_settings(tmp_path), tuner="random", n_trials=1, tracking=tracking(tmp_path),
                            out_dir=tmp_path, progress=False, storage=f"sqlite:///{tmp_path / 'optuna.db'}", final=True)
    study = optuna.load_study(study_name="kt-stop", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    client = Tracker(tracking(tmp_path)).client
    assert client.get_run(study.user_attrs["mlflow_parent_run_id"]).info.status == status


def test_a_keras_tuner_resume_ends_the_trial_runs_a_killed_search_left_running(tmp_path, capsys):
    """kill -9 (or the OOM killer) in a KerasTuner trial left its MLflow run RUNNING for good: the resume redid the
    trial in a new run of the same number, and `sync`, which follows the Optuna study, never touched the old one.
    A resume now ends such runs FAILED; a run whose process still lives is left alone."""
    import os
    import socket

    import search.keras_tuner_engine as kte
    from search._process import start_token

    storage, cfg = f"sqlite:///{tmp_path / 'optuna.db'}", tracking(tmp_path)
    out = kte.run_keras_tuner("kt-orphan", tiny_settings(tmp_path), tuner="random", n_trials=1, tracking=cfg,
                              out_dir=tmp_path, progress=False, storage=storage, final=False)
    tracker = Tracker(cfg)
    parent = out["study"].user_attrs["mlflow_parent_run_id"]
    (done,) = tracker.trial_runs(parent).values()
    assert done.data.tags["worker"] == f"{socket.gethostname()}:{os.getpid()}"  # as the driver's runs
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    runs = {}
    for name, pid, started in (("dead", dead.pid, "boot/1"), ("alive", os.getpid(), start_token(os.getpid()))):
        runs[name] = tracker.start_trial(parent, 1, "kt-orphan", {}, {"worker": f"{socket.gethostname()}:{pid}",
                                                                       "worker_started": started})
    runs["elsewhere"] = tracker.start_trial(parent, 1, "kt-orphan", {}, {"worker": "another-host:1"})
    kte.run_keras_tuner("kt-orphan", tiny_settings(tmp_path), tuner="random", n_trials=1, tracking=cfg,
                        out_dir=tmp_path, progress=False, storage=storage, final=False)
    status = {name: tracker.client.get_run(run_id) for name, run_id in runs.items()}
    assert status["dead"].info.status == "FAILED" and "process died" in status["dead"].data.tags["fail_reason"]
    assert status["alive"].info.status == status["elsewhere"].info.status == "RUNNING"
    assert "the MLflow run(s) of trial(s) 1 were left RUNNING by a search that died" in capsys.readouterr().out


def test_a_keras_tuner_trial_whose_model_cannot_be_saved_is_still_recorded(tmp_path, monkeypatch, caplog):
    """Saving the trial's model for MLflow raised out of the trial after its value was computed: KerasTuner counted
    it failed and the study never got it. Now it is a warning, and the trial says its run holds no model."""
    import logging

    import search.keras_tuner_engine as kte

    caplog.set_level(logging.WARNING, logger="search")
    fake_keras_tuner_training(monkeypatch, [0.7])  # its "model" is None: saving it raises
    out = kte.run_keras_tuner("kt-nomodel", tiny_settings(tmp_path), tuner="random", n_trials=1,
                              tracking=tracking(tmp_path), out_dir=tmp_path, progress=False,
                              storage=f"sqlite:///{tmp_path / 'optuna.db'}", final=False)
    t = out["study"].trials[0]
    assert t.state.name == "COMPLETE" and t.value == 0.7 and t.user_attrs["model_in_mlflow"] is False
    assert "could not save the model for MLflow (AttributeError" in caplog.text
    run = Tracker(tracking(tmp_path)).client.get_run(t.user_attrs["mlflow_run_id"])
    assert run.info.status == "FINISHED" and "roc.png" in {a.path for a in Tracker(tracking(tmp_path)).client.list_artifacts(run.info.run_id)}


def test_a_retried_trial_does_not_keep_its_predecessor_s_folds_or_curves(tmp_path, small_mitdb, monkeypatch):
    """Optuna's RetryFailedTrialCallback copies a dead trial's user attrs into its retry: a retry that failed before
    its first epoch kept the predecessor's fold metrics and curves, and sync logged them on the retry's run."""
    import search.objective
    from ecg_data import patient_kfold
    from search import CVObjective

    def fit(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(search.objective, "fit", fit)
    objective = CVObjective(small_mitdb.search_part(), SearchSpace.load(tiny_space_file(tmp_path)),
                            patient_kfold(2, seed=0))
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    trial.set_user_attr("fold_metrics", [{"f1": 0.9}])  # as the retry callback copies them
    trial.set_user_attr("epoch_curves", {"fold0.loss": [0.5]})
    trial.set_user_attr("mlflow_curves_lost", True)
    with pytest.raises(RuntimeError, match="out of memory"):
        objective(trial)
    attrs = study.trials[0].user_attrs
    assert attrs["fold_metrics"] == [] and attrs["epoch_curves"] == {} and "out of memory" in attrs["fail_reason"]
    assert attrs["mlflow_curves_lost"] is False


def test_ctrl_c_while_the_trial_run_is_being_opened_still_marks_it_interrupted(tmp_path, small_mitdb):
    """The window between Optuna creating the trial and training (opening its MLflow run) is covered:
    otherwise the trial fails without the mark and a resumed study never redoes it."""
    from ecg_data import patient_kfold
    from search import CVObjective

    class MLflowCtrlC:  # stands in for a Tracker whose create_run gets the SIGINT
        def start_trial(self, *args, **kwargs):
            raise KeyboardInterrupt

    data = small_mitdb.search_part()
    objective = CVObjective(data, SearchSpace.load(tiny_space_file(tmp_path)), patient_kfold(2, seed=0),
                            tracker=MLflowCtrlC(), parent_run_id="parent")
    study = optuna.create_study(direction="maximize")
    with pytest.raises(KeyboardInterrupt):
        study.optimize(objective, n_trials=1)
    t = study.trials[0]
    assert t.state.name == "FAIL" and t.user_attrs["interrupted"] is True
    assert t.user_attrs["fail_reason"] == "interrupted (Ctrl-C)"


def test_a_trial_stopped_by_sigterm_says_sigterm_not_ctrl_c(tmp_path, small_mitdb):
    """A worker ended by `kill` or a scheduler recorded 'interrupted (Ctrl-C)' in Optuna and MLflow."""
    from ecg_data import patient_kfold
    from search import CVObjective, interrupt

    class MLflowSigterm:  # the SIGTERM arrives while the trial's run is being opened
        def start_trial(self, *args, **kwargs):
            interrupt._handler(signal.SIGTERM, None)

    data = small_mitdb.search_part()
    objective = CVObjective(data, SearchSpace.load(tiny_space_file(tmp_path)), patient_kfold(2, seed=0),
                            tracker=MLflowSigterm(), parent_run_id="parent")
    study = optuna.create_study(direction="maximize")
    try:
        with pytest.raises(KeyboardInterrupt):
            study.optimize(objective, n_trials=1)
    finally:
        interrupt.clear()
    assert study.trials[0].user_attrs["fail_reason"] == "interrupted (SIGTERM)"


def test_ctrl_c_that_tensorflow_turns_into_another_error_still_marks_the_trial_interrupted(tmp_path, small_mitdb):
    """A SIGINT inside TensorFlow can surface as e.g. a TypeError (seen in CI); the handler's flag tells it
    from a broken trial, so the trial is marked interrupted and the study stops as for Ctrl-C."""
    from ecg_data import patient_kfold
    from search import CVObjective, interrupt

    def ctrl_c_inside_tensorflow(config, trial):
        interrupt._requested.set()  # what the SIGINT handler does before its KeyboardInterrupt is converted
        raise TypeError("Failed to convert elements of (None,) to Tensor.")

    objective = CVObjective(small_mitdb.search_part(), SearchSpace.load(tiny_space_file(tmp_path)),
                            patient_kfold(2, seed=0), gates=[ctrl_c_inside_tensorflow])
    study = optuna.create_study(direction="maximize")
    try:
        with pytest.raises(KeyboardInterrupt):
            study.optimize(objective, n_trials=1, catch=(Exception,))
    finally:
        interrupt.clear()
    t = study.trials[0]
    assert t.state.name == "FAIL" and t.user_attrs["interrupted"] is True
    # without Ctrl-C the same error is an ordinary failure with its reason
    def broken(config, trial):
        raise TypeError("Failed to convert elements of (None,) to Tensor.")

    objective.gates = [broken]
    study.optimize(objective, n_trials=1, catch=(Exception,))
    t = study.trials[1]
    assert t.state.name == "FAIL" and "interrupted" not in t.user_attrs
    assert t.user_attrs["fail_reason"].startswith("TypeError: Failed to convert")


def test_the_default_pruner_first_compares_a_trial_on_its_second_fold(tmp_path):
    """The median pruner waits one fold's epochs (steps are fold * epochs + epoch): a trial that trails the
    finished ones on its first fold's patients goes on; one still trailing on the second fold is stopped.
    It waits for the study's own epochs, also when the study is resumed or joined by a worker."""
    from search import open_study

    storage = f"sqlite:///{tmp_path / 'o.db'}"
    settings = tiny_settings(tmp_path)
    settings.space_yaml = SearchSpace.from_yaml(settings.space_yaml).with_overrides(epochs=3).to_yaml()
    settings.folds = 3
    made, _ = open_study("warm", storage, settings, heartbeat=None)
    joined, _ = open_study("warm", storage, None, heartbeat=None)
    for study in (made, joined):
        for _ in range(3 if study is made else 0):  # three finished trials, 0.9 at every step
            t = study.ask()
            for step in range(6):
                t.report(0.9, step)
            study.tell(t, 0.8)
        t = study.ask()
        verdicts = []
        for step in range(6):
            t.report(0.6, step)
            verdicts.append(t.should_prune())
        study.tell(t, state=optuna.trial.TrialState.FAIL)
        assert verdicts == [False, False, False, True, True, True]


def test_rerun_of_a_finished_study_redoes_nothing(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    settings = tiny_settings(tmp_path)
    first = run_search("t2", settings, n_trials=2, storage=storage, tracking=None, progress=False, final=False)
    before = [(t.number, t.params) for t in first.study.trials]
    again = run_search("t2", settings, n_trials=2, storage=storage, tracking=None, progress=False, final=False)
    assert [(t.number, t.params) for t in again.study.trials] == before
    grown = run_search("t2", settings, n_trials=3, storage=storage, tracking=None, progress=False, final=False)
    assert len(grown.study.trials) == 3 and [(t.number, t.params) for t in grown.study.trials[:2]] == before


def test_resuming_with_other_settings_is_refused(tmp_path):
    from search import StudyMismatchError

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    run_search("t3", tiny_settings(tmp_path), n_trials=1, storage=storage, tracking=None, progress=False, final=False)
    with pytest.raises(StudyMismatchError, match="folds: study has 2, command gives 3"):
        s = tiny_settings(tmp_path)
        s.folds = 3
        run_search("t3", s, n_trials=2, storage=storage, tracking=None, progress=False, final=False)
    # a changed space (e.g. --epochs) is named key by key, not as "space_yaml"
    space = SearchSpace.from_yaml(tiny_settings(tmp_path).space_yaml)
    other = tiny_settings(tmp_path)
    other.space_yaml = space.with_overrides(epochs=space.params["epochs"] + 1).to_yaml()
    with pytest.raises(StudyMismatchError, match=r"space: params\.epochs: study has 1, command gives 2\)"):
        run_search("t3", other, n_trials=2, storage=storage, tracking=None, progress=False, final=False)
    # the same space written in another order, a float as an int: the same study (it was refused, "same values,
    # other text"), for both engines' checks
    from search.study import refuse_other_settings

    doc = yaml.safe_load(tiny_settings(tmp_path).space_yaml)
    doc["params"] = dict(reversed(list(doc["params"].items())))
    doc["params"]["conv_dropout"] = 0  # 0.0 in the study
    same = tiny_settings(tmp_path)
    same.space_yaml = yaml.safe_dump(doc, sort_keys=False)
    assert same.space_yaml != tiny_settings(tmp_path).space_yaml
    refuse_other_settings("t3", storage, same, engine="optuna")
    # a renamed copy that also differs otherwise: every difference at once (the name alone was told first)
    doc["name"], doc["params"]["epochs"] = "tiny_v2", 2
    other.space_yaml = yaml.safe_dump(doc, sort_keys=False)
    with pytest.raises(StudyMismatchError, match=r"space: name: study has 'tiny', command gives 'tiny_v2' \(a space "
                                                 r"file without `name:` is named after the file\); params\.epochs: "
                                                 r"study has 1, command gives 2\)"):
        refuse_other_settings("t3", storage, other, engine="optuna")


def test_a_mismatched_resume_is_refused_before_the_data_loads(tmp_path, monkeypatch):
    """Loading the data takes minutes (or starts a download where there is no data root): a resume that
    will be refused anyway is refused first, by both engines."""
    import search.keras_tuner_engine as kte
    import search.study as study_module
    from search import StudyMismatchError

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    run_search("t4", tiny_settings(tmp_path), n_trials=1, storage=storage, tracking=None, progress=False, final=False)

    def no_data(*args, **kwargs):
        raise AssertionError("the data was loaded for a resume that is refused")

    monkeypatch.setattr(study_module, "load_study_data", no_data)
    monkeypatch.setattr(kte, "load_study_data", no_data)
    other = tiny_settings(tmp_path)
    other.folds = 3
    with pytest.raises(StudyMismatchError, match="folds: study has 2, command gives 3"):
        run_search("t4", other, n_trials=2, storage=storage, tracking=None, progress=False, final=False)
    with pytest.raises(StudyMismatchError, match="searched by optuna, not keras-tuner:random"):
        kte.run_keras_tuner("t4", tiny_settings(tmp_path), tuner="random", n_trials=2, tracking=None,
                            out_dir=tmp_path, progress=False, storage=storage)
    with pytest.raises(AssertionError, match="the data was loaded"):  # a new study still loads its data
        run_search("t5", tiny_settings(tmp_path), n_trials=1, storage=storage, tracking=None, progress=False)
    assert not [s for s in optuna.get_all_study_summaries(storage) if s.study_name == "t5"]


def test_a_study_made_with_other_preprocessing_is_refused(tmp_path):
    """Trials measured on other features (an older data pipeline) must not mix with new ones."""
    from ecg_data.cache import PIPELINE_VERSION
    from search import StudyMismatchError, open_study

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    old = optuna.create_study(study_name="old", storage=storage)
    old.set_user_attr("settings", {**tiny_settings(tmp_path).to_dict(), "pipeline_version": None})
    for settings in (tiny_settings(tmp_path), None):  # resuming it, and a worker/export joining it
        with pytest.raises(StudyMismatchError, match=f"pipeline version 5 or older.*version {PIPELINE_VERSION}"):
            open_study("old", storage, settings, heartbeat=None)
    _, made = open_study("new", storage, tiny_settings(tmp_path), heartbeat=None)
    assert made.pipeline_version == PIPELINE_VERSION
    assert open_study("new", storage, None, heartbeat=None)[1].pipeline_version == PIPELINE_VERSION


def test_a_study_made_on_another_data_layout_is_refused_by_both_engines(tmp_path, monkeypatch):
    """The heartbeat-CSV reader changed its window layout without a new pipeline version (that would refuse every
    dataset's studies): a heartbeat-CSV study made before the change resumed on windows of the new layout, mixing
    trials measured on other inputs. A study records its dataset's layout; one without a record is refused for
    heartbeat-csv (it predates the change) and resumed for MIT-BIH (nothing changed), by both engines, before the
    data loads; a later layout change refuses studies of the earlier one."""
    import dataclasses

    import search.keras_tuner_engine as kte
    import search.study as study_module
    from ecg_data import heartbeat_csv
    from search import StudyMismatchError, open_study
    from search.study import refuse_other_settings

    def no_data(*args, **kwargs):
        raise AssertionError("the data was loaded for a resume that is refused")

    monkeypatch.setattr(study_module, "load_study_data", no_data)
    monkeypatch.setattr(kte, "load_study_data", no_data)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    hb = dataclasses.replace(tiny_settings(tmp_path), dataset="heartbeat-csv", records=None,
                             data_path=str(tmp_path / "csv"))
    for name, engine in (("hb-old", "optuna"), ("hb-old-kt", "keras-tuner:random")):
        old = optuna.create_study(study_name=name, storage=storage, direction="maximize")
        # as an ecg-automl before the record stored it: the settings have no data_layout
        old.set_user_attr("settings", _without_layout(hb))
        old.set_user_attr("engine", engine)
    no_record = r"no layout recorded .*most likely with layout 1.*now: layout 2 .*another --study name"
    with pytest.raises(StudyMismatchError, match=no_record):
        run_search("hb-old", hb, n_trials=1, storage=storage, tracking=None, progress=False, final=False)
    with pytest.raises(StudyMismatchError, match=no_record):
        kte.run_keras_tuner("hb-old-kt", hb, tuner="random", n_trials=1, tracking=None, out_dir=tmp_path,
                            progress=False, storage=storage)
    for name in ("hb-old", "hb-old-kt"):  # a worker or an export (no settings given) is refused alike
        with pytest.raises(StudyMismatchError, match=no_record):
            open_study(name, storage, None, heartbeat=None)

    # an MIT-BIH study stored without the record resumes: its arrays did not change
    mit = optuna.create_study(study_name="mit-old", storage=storage, direction="maximize")
    mit.set_user_attr("settings", _without_layout(tiny_settings(tmp_path)))
    refuse_other_settings("mit-old", storage, tiny_settings(tmp_path), engine="optuna")
    assert open_study("mit-old", storage, tiny_settings(tmp_path), heartbeat=None)[1].data_layout is None
    assert open_study("mit-old", storage, None, heartbeat=None)[1].data_layout is None

    # a new heartbeat-CSV study records the layout and resumes; after another layout change it is refused
    _, made = open_study("hb-new", storage, hb, heartbeat=None)
    assert made.data_layout == heartbeat_csv.WINDOW_LAYOUT
    stored = optuna.load_study(study_name="hb-new", storage=storage).user_attrs["settings"]
    assert stored["data_layout"] == heartbeat_csv.WINDOW_LAYOUT
    refuse_other_settings("hb-new", storage, hb, engine="optuna")
    assert open_study("hb-new", storage, hb, heartbeat=None)[1] == made
    monkeypatch.setattr(heartbeat_csv, "WINDOW_LAYOUT", heartbeat_csv.WINDOW_LAYOUT + 1)
    changed = rf"Study: layout 2 \(each row's R peak at the window centre\); now: layout 3\. .*another --study name"
    with pytest.raises(StudyMismatchError, match=changed):
        refuse_other_settings("hb-new", storage, hb, engine="optuna")
    with pytest.raises(StudyMismatchError, match=changed):
        open_study("hb-new", storage, None, heartbeat=None)
    assert open_study("mit-old", storage, tiny_settings(tmp_path), heartbeat=None)  # other datasets: unaffected


def _without_layout(settings: StudySettings) -> dict:
    """``settings`` as an ecg-automl before the data-layout record stored them: this pipeline version, no layout."""
    from ecg_data.cache import PIPELINE_VERSION

    stored = {**settings.to_dict(), "pipeline_version": PIPELINE_VERSION}
    stored.pop("data_layout", None)
    return stored


def _repeatable(study) -> dict:
    """What two runs of one command with one seed must share: each trial's params, value, threshold and per-fold
    metrics (not their timings), and the final test's figures (not its time or path)."""
    timing = {"train_seconds", "validation_seconds", "beats_per_s"}
    final = study.user_attrs["final"]
    return {"trials": [(t.number, t.state.name, t.params, t.value, t.user_attrs["threshold"],
                        [{k: v for k, v in m.items() if k not in timing} for m in t.user_attrs["fold_metrics"]])
                       for t in study.trials],
            "final": {k: final[k] for k in ("trial", "abnormal", "at_0.5", "per_class", "confusion_matrix", "by_label")}}


def test_the_same_command_and_seed_repeat_a_study_to_the_last_bit_and_record_the_thread_count(tmp_path, cli_env):
    """One process, one --seed, one thread count: two runs (each with its own Python hash seed) draw the same
    trials with the same values, thresholds and fold metrics, and the final test gives the same held-out figures,
    exactly. Each trial and the final test record the TensorFlow threads they trained with: another count sums
    floats in another order, and the held-out figures differ (docs/REPRODUCIBILITY.md)."""
    space = tiny_space_file(tmp_path)
    studies = []
    for run, hash_seed in enumerate(("1", "2")):
        storage = f"sqlite:///{tmp_path / f'o{run}.db'}"
        proc = run_cli(["search", "--dataset", "mitdb", "--space", space, "--trials", 2, "--folds", 2, "--max-beats",
                        800, "--records", ",".join(SMALL_RECORDS), "--study", "again", "--seed", 5, "--tf-threads", 1,
                        "--storage", storage, "--out-dir", tmp_path / f"runs{run}", "--no-mlflow", "--quiet"],
                       tmp_path, dict(cli_env, PYTHONHASHSEED=hash_seed))
        studies.append(optuna.load_study(study_name="again", storage=storage))
    # the search ends with the export command of its final model, with this run's storage: it runs as printed
    export = next(line for line in proc.stdout.splitlines() if "ecg-automl export" in line)
    assert export.endswith(f"ecg-automl export --study again --storage {storage} --no-mlflow --mode int8 "
                           f"--out again-int8.tflite"), proc.stdout
    assert "ecg-automl ui" not in proc.stdout  # no MLflow run to browse
    argv = shlex.split(export.split("ecg-automl ", 1)[1])
    run_cli([*argv, "--verify-beats", 500, "--runs", 10], tmp_path, cli_env)
    assert json.loads((tmp_path / "again-int8.json").read_text())["trial"] == studies[1].user_attrs["final"]["trial"]
    first, second = studies
    assert [t.state.name for t in first.trials] == ["COMPLETE"] * 2
    assert len({json.dumps(t.params, sort_keys=True) for t in first.trials}) > 1  # a search, not one config twice
    assert _repeatable(first) == _repeatable(second)
    for study in studies:
        assert [t.user_attrs["tf_threads"] for t in study.trials] == [1, 1]
        assert study.user_attrs["final"]["tf_threads"] == 1


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_then_rerun_loses_and_repeats_nothing(tmp_path, cli_env, sig):
    """SIGINT (Ctrl-C) or SIGTERM (kill, a job scheduler) during a trial marks it failed; the same command
    again finishes the study at once (no wait for the heartbeat): every finished trial kept, the interrupted
    one redone, none run twice, MLflow still 1:1."""
    space = tiny_space_file(tmp_path)
    n = 3
    args = ["search", "--dataset", "mitdb", "--space", space, "--trials", n, "--folds", 2, "--epochs", 1,
            "--max-beats", 800, "--records", ",".join(SMALL_RECORDS), "--study", "ctrlc", "--seed", 3,
            "--pruner", "none", "--no-final", "--storage", f"sqlite:///{tmp_path / 'o.db'}",
            "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--experiment", "test"]
    proc = subprocess.Popen([sys.executable, "-m", "ecg_automl", *map(str, args)], cwd=tmp_path, env=cli_env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    storage = f"sqlite:///{tmp_path / 'o.db'}"
    deadline = time.time() + 300
    while time.time() < deadline:  # wait until a trial is complete and another one is running (training:
        time.sleep(1)  # every parameter drawn; a signal while it was still drawing them left a partial trial)
        assert proc.poll() is None, "the study finished before the test could interrupt it"
        try:
            trials = optuna.load_study(study_name="ctrlc", storage=storage).trials
        except Exception:
            continue
        names = {frozenset(t.params) for t in trials if t.state.name == "COMPLETE"}
        if any(t.state.name == "RUNNING" and frozenset(t.params) in names for t in trials):
            break
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == (143 if sig == signal.SIGTERM else 130), out
    assert "run the same command again to resume" in out
    study = optuna.load_study(study_name="ctrlc", storage=storage)
    interrupted = [t for t in study.trials if t.state.name == "FAIL"]
    assert len(interrupted) == 1 and interrupted[0].user_attrs["interrupted"]
    by = "SIGTERM" if sig == signal.SIGTERM else "Ctrl-C"
    assert interrupted[0].user_attrs["fail_reason"] == f"interrupted ({by})"
    # its redo is enqueued at once, so that a worker still running on the study takes it (one stopped worker's
    # trial was redone only when that worker's command ran again, and then never when the study was full)
    waiting = [t for t in study.trials if t.state.name == "WAITING"]
    assert [(t.user_attrs.get("retry_of"), t.system_attrs.get("fixed_params")) for t in waiting] == [
        (interrupted[0].number, interrupted[0].params)]
    assert interrupted[0].user_attrs["requeued"] is True
    done_before = {t.number: t.params for t in study.trials if t.state.name == "COMPLETE"}
    client = Tracker(tracking(tmp_path)).client  # the study's run is closed as stopped, not RUNNING for good
    assert client.get_run(study.user_attrs["mlflow_parent_run_id"]).info.status == "KILLED"

    run_cli(args, tmp_path, cli_env)
    study = optuna.load_study(study_name="ctrlc", storage=storage)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == n
    for number, params in done_before.items():  # nothing lost
        assert study.trials[number].params == params and study.trials[number].state.name == "COMPLETE"
    # the interrupted trial's params were redone exactly once
    redo = [t for t in complete if t.user_attrs.get("retry_of") == interrupted[0].number]
    assert len(redo) == 1 and redo[0].params == interrupted[0].params
    runs = mlflow_trial_runs(tmp_path, study)
    assert sorted(runs) == [t.number for t in study.trials]
    assert runs[interrupted[0].number].info.status == "FAILED"
    assert client.get_run(study.user_attrs["mlflow_parent_run_id"]).info.status == "FINISHED"


def test_keras_tuner_engine_on_the_same_space(tmp_path, capsys):
    """KerasTuner searches the same space; its trials go to an Optuna study of the same name, so the final
    test and export treat its best like the driver's, and a resumed search records nothing twice."""
    from ecg_automl.tflite.export import export_trial
    from search import StudyMismatchError
    from search.keras_tuner_engine import run_keras_tuner

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    out = run_keras_tuner("kt", tiny_settings(tmp_path), tuner="random", n_trials=2, tracking=tracking(tmp_path),
                          out_dir=tmp_path, progress=False, storage=storage, final=True)
    assert len(out["history"]) == 2
    study = out["study"]
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert [t.value for t in done] == [h["value"] for h in out["history"]]
    assert [t.user_attrs["config"] for t in done] == [h["config"] for h in out["history"]]
    assert [t.user_attrs["threshold"] for t in done] == [h["threshold"] for h in out["history"]]
    assert study.user_attrs["engine"] == "keras-tuner:random"
    from search import tf_threads
    assert [t.user_attrs["tf_threads"] for t in done] == [tf_threads()] * 2  # their values depend on it
    best = max(done, key=lambda t: t.value)
    final = out["final"]
    assert final["trial"] == best.number and final["config"] == best.user_attrs["config"]
    assert Path(final["model_path"]).exists() and 0.5 < final["abnormal"]["roc_auc"] <= 1
    assert "keras-tuner study kt: 2 trial(s) recorded (2 complete) in" in capsys.readouterr().out
    parent = Tracker(tracking(tmp_path)).client.get_run(study.user_attrs["mlflow_parent_run_id"])
    assert parent.data.tags["engine"] == "keras-tuner"  # the final test is on KerasTuner's study run
    assert parent.data.tags["space"] == "tiny"  # the space's name labels its runs, as the driver's
    assert {r.data.tags["space"] for r in mlflow_trial_runs(tmp_path, study).values()} == {"tiny"}
    assert {r.data.tags["objective.metric"] for r in mlflow_trial_runs(tmp_path, study).values()} == {"f1"}
    assert all("`objective.quality`" in r.data.tags["mlflow.note.content"]
               for r in mlflow_trial_runs(tmp_path, study).values())
    assert "`test.*`: the final test" in parent.data.tags["mlflow.note.content"]
    # a complete trial's run says so, as the driver's do (a filter on tags.optuna.state missed them)
    assert {r.data.tags.get("optuna.state") for r in mlflow_trial_runs(tmp_path, study).values()} == {"COMPLETE"}
    assert parent.data.metrics["test.roc_auc"] == pytest.approx(final["abnormal"]["roc_auc"])
    meta = export_trial("kt", storage, "best", "fp32", tmp_path / "kt.tflite", verify_beats=300, runs=20,
                        tracking=tracking(tmp_path))
    assert meta["trial"] == best.number and meta["threshold"] == best.user_attrs["threshold"]
    assert meta["model_origin"] == "final model (one model trained on all search patients)"
    # the export is logged to the best trial's run, as for the driver's trials (it was silently not logged: the
    # recorded trial did not name its MLflow run)
    client = Tracker(tracking(tmp_path)).client
    best_run = client.get_run(best.user_attrs["mlflow_run_id"])
    assert best_run.data.tags["optuna.trial_number"] == str(best.number)
    assert {a.path for a in client.list_artifacts(best_run.info.run_id, "tflite/fp32")} == {
        "tflite/fp32/kt.tflite", "tflite/fp32/kt.json"}
    again = run_keras_tuner("kt", tiny_settings(tmp_path), tuner="random", n_trials=2, tracking=tracking(tmp_path),
                            out_dir=tmp_path, progress=False, storage=storage)
    assert len(again["study"].trials) == 2  # KerasTuner resumed its finished search: nothing new, nothing twice
    # ... under the same MLflow run (a new one per resume made `sync` create every trial's run again)
    assert again["study"].user_attrs["mlflow_parent_run_id"] == parent.info.run_id
    assert Tracker(tracking(tmp_path)).sync(again["study"]) == {"created": 0, "updated": 0}
    with pytest.raises(StudyMismatchError, match="searched by keras-tuner:random, not optuna"):
        run_search("kt", tiny_settings(tmp_path), n_trials=3, storage=storage, tracking=None, progress=False)
    space = SearchSpace.load(tiny_space_file(tmp_path))
    for h in out["history"]:
        assert set(h["config"]) == set(space.params)
        assert h["config"]["input_length"] in (128, 192) and 0 <= h["value"] <= 1
    # KerasTuner really searched the space (not every trial at its default values)
    a, b = (h["config"] for h in out["history"])
    assert a["learning_rate"] != b["learning_rate"]
    tracker = Tracker(tracking(tmp_path))
    runs = tracker.client.search_runs([tracker.experiment_id], "tags.engine = 'keras-tuner'")
    trial_runs = [r for r in runs if r.data.tags.get("ecg_automl.kind") == "trial"]
    assert len(trial_runs) == 2
    # each KerasTuner trial's run holds what a driver trial's does (it had no curves, summary, plots or model)
    driver = run_search("kt-driver", tiny_settings(tmp_path), n_trials=1, storage=storage,
                        tracking=tracking(tmp_path), progress=False, final=False, out_dir=tmp_path).study.trials[0]
    driver_run = tracker.client.get_run(driver.user_attrs["mlflow_run_id"])
    for run, t in ((r, next(t for t in done if t.user_attrs["mlflow_run_id"] == r.info.run_id)) for r in trial_runs):
        logged = {k for k in run.data.metrics if not k.startswith("tflite.")}  # the export above logs those
        assert logged == set(driver_run.data.metrics)
        assert {a.path for a in tracker.client.list_artifacts(run.info.run_id)} >= {
            "confusion_matrix.png", "roc.png", "model"}
        # one curve point per epoch and fold, the values the study keeps for `sync`
        curve = [m.value for m in tracker.client.get_metric_history(run.info.run_id, "fold1.val_auc")]
        assert len(curve) == t.user_attrs["config"]["epochs"]
        assert curve == pytest.approx(t.user_attrs["epoch_curves"]["fold1.val_auc"], rel=1e-6)
        assert run.data.metrics["threshold"] == t.user_attrs["threshold"]
        assert run.data.metrics["mean.f1"] == t.user_attrs["mean_metrics"]["mean.f1"]
        assert [f["objective"] for f in t.user_attrs["fold_metrics"]] == [
            m.value for m in tracker.client.get_metric_history(run.info.run_id, "fold.objective")]
    # so a trial that is not the final model exports its own logged model, as a driver trial does (retrained before)
    other = next(t for t in done if t.number != best.number)
    meta = export_trial("kt", storage, other.number, "fp32", tmp_path / "kt-other.tflite", verify_beats=300,
                        runs=20, tracking=tracking(tmp_path))
    assert meta["model_origin"] == f"trial model from MLflow run {other.user_attrs['mlflow_run_id']}"


def test_an_empty_keras_tuner_study_is_not_joined_or_mixed_with_optuna_trials(tmp_path, monkeypatch):
    """KerasTuner records a trial only when it ends, so its study is empty while the first trial runs. A worker
    joined such a study (and set its engine to optuna), and an Optuna search that took the study over got
    KerasTuner's trial added to its own when it ended: one study held both engines' draws."""
    import search.keras_tuner_engine as kte
    from search import StudyMismatchError, open_study

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    open_study("kt", storage, tiny_settings(tmp_path), heartbeat=None, engine="keras-tuner:random")
    # (the message said "Choose a new --study name", which a worker cannot act on)
    with pytest.raises(StudyMismatchError, match="is searched by keras-tuner:random: `ecg-automl worker` joins "
                                                 "Optuna-engine studies only. .* resume it with the `ecg-automl "
                                                 "search --engine keras-tuner` command"):
        open_study("kt", storage, None, heartbeat=None, engine="optuna")
    assert optuna.load_study(study_name="kt", storage=storage).user_attrs["engine"] == "keras-tuner:random"

    real_fit, taken = kte.fit, []

    def fit_while_an_optuna_search_takes_the_study(*args, **kw):
        if not taken:  # an Optuna search on the same name, started while KerasTuner trains its first trial
            taken.append(open_study("kt2", storage, tiny_settings(tmp_path), heartbeat=None, engine="optuna"))
        return real_fit(*args, **kw)

    monkeypatch.setattr(kte, "fit", fit_while_an_optuna_search_takes_the_study)
    with pytest.raises(StudyMismatchError, match="now belongs to optuna, not keras-tuner:random"):
        kte.run_keras_tuner("kt2", tiny_settings(tmp_path), tuner="random", n_trials=2, tracking=tracking(tmp_path),
                            out_dir=tmp_path, progress=False, storage=storage)
    study = optuna.load_study(study_name="kt2", storage=storage)
    assert study.user_attrs["engine"] == "optuna" and not study.trials  # KerasTuner's trial was not added
    client = Tracker(tracking(tmp_path)).client
    parent = client.get_run(study.user_attrs["mlflow_parent_run_id"])
    assert parent.info.status == "FAILED"  # the KerasTuner study run is closed, not left RUNNING


def test_tf_threads_limit_tensorflow_and_refuse_to_be_ignored(tmp_path):
    """search/worker --tf-threads N: TensorFlow then runs N threads; asked too late it says so, not silently."""
    code = ("import tensorflow as tf, search\n"
            "search.set_threads(1)\n"
            "assert tf.config.threading.get_intra_op_parallelism_threads() == 1\n"
            "assert tf.config.threading.get_inter_op_parallelism_threads() == 1\n"
            "tf.constant(1.0) + 1.0\n"
            "try:\n    search.set_threads(2)\nexcept RuntimeError as e:\n    print('refused:', e)\n"
            "try:\n    search.set_threads(0)\nexcept ValueError as e:\n    print('bad:', e)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "refused: cannot limit TensorFlow to 2 threads after it has started" in proc.stdout
    assert "bad: threads must be a positive number" in proc.stdout


@pytest.mark.parametrize("tuner", ["random", "hyperband", "bayesian"])
def test_keras_tuner_draws_repeat_for_every_seed_including_0(tuner):
    """KerasTuner reads seed 0 as "no seed" (``seed or random.randint``); the engine must not inherit that:
    the same --seed draws the same configs, for 0 (the CLI's default) as for any other, and seeds differ."""
    from search.keras_tuner_engine import make_oracle

    space = SearchSpace.load("default")

    def first_draws(seed: int) -> list[dict]:
        oracle = make_oracle(tuner, n_trials=10, max_epochs=4, seed=seed, space=space)
        return [oracle.populate_space(f"t{i}")["values"] for i in range(3)]

    assert first_draws(0) == first_draws(0)
    assert first_draws(1) == first_draws(1)
    assert first_draws(0) != first_draws(1)


def test_keras_tuner_hyperband_runs_its_schedule_again_until_trials(tmp_path):
    """KerasTuner's Hyperband stops after one bracket schedule by default (10 trials for 4 epochs, factor 3):
    the engine repeats the schedule, so --trials (or the benchmark's clock) is what ends the search."""
    from search.keras_tuner_engine import make_oracle

    space = SearchSpace.load("default")
    oracle = make_oracle("hyperband", n_trials=25, max_epochs=4, seed=1, space=space)
    oracle._set_project_dir(str(tmp_path), "hb")
    finished = 0
    while finished < 100:
        trial = oracle.create_trial("tuner0")
        if trial.status != "RUNNING":
            break
        oracle.update_trial(trial.trial_id, {"val_objective": 0.5 + 0.001 * finished})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
        finished += 1
    assert finished == 25 and trial.status == "STOPPED"


def test_a_hyperband_trial_s_run_says_its_bracket_round_and_the_trial_it_trains_again(tmp_path, monkeypatch):
    """One config had MLflow runs of 1 and 2 epochs with nothing saying why: Hyperband's bracket, round and the trial
    a promoted run trains again are tags of its run now (nothing for the random tuner)."""
    import types

    import search.keras_tuner_engine as kte

    fake_keras_tuner_training(monkeypatch, [0.5 + 0.01 * i for i in range(8)])
    space = tmp_path / "hb.yaml"  # up to 3 epochs: Hyperband's rounds of 1 and 3
    space.write_text(yaml.safe_dump({"name": "tiny", "data": {"fs": 180, "window": 192}, "params": {**TINY, "epochs": 3}}))
    settings = StudySettings(dataset="mitdb", space_yaml=SearchSpace.load(space).to_yaml(), folds=2, seed=1,
                             max_beats=800, records=SMALL_RECORDS)
    out = kte.run_keras_tuner("kt-hb", settings, tuner="hyperband", n_trials=8,
                              tracking=tracking(tmp_path), out_dir=tmp_path, progress=False,
                              storage=f"sqlite:///{tmp_path / 'optuna.db'}", final=False)
    runs = list(mlflow_trial_runs(tmp_path, out["study"]).values())
    assert len(runs) == 8 and all({"keras_tuner.bracket", "keras_tuner.round"} <= set(r.data.tags) for r in runs)
    ids = {r.data.tags["keras_tuner.trial_id"]: r for r in runs}
    promoted = [r for r in runs if "keras_tuner.promoted_from" in r.data.tags]
    assert promoted, [r.data.tags for r in runs]
    for r in promoted:  # the same config, trained again for more epochs in the next round
        earlier = ids[r.data.tags["keras_tuner.promoted_from"]]
        assert int(r.data.tags["keras_tuner.round"]) == int(earlier.data.tags["keras_tuner.round"]) + 1
        assert int(r.data.params["epochs"]) > int(earlier.data.params["epochs"])
    drawn = kte.make_oracle("random", n_trials=2, max_epochs=2, seed=0, space=SearchSpace.load("default"))
    assert kte._hyperband_tags(types.SimpleNamespace(values=drawn.populate_space("t0")["values"])) == {}


@pytest.mark.parametrize("epochs", [1, 2, 4])
def test_keras_tuner_hyperband_trains_no_more_epochs_than_asked(tmp_path, epochs):
    """--epochs E is Hyperband's largest round: --epochs 1 trained every trial 2 epochs (max_epochs was raised
    to 2), twice what the command said."""
    from search.keras_tuner_engine import make_oracle

    oracle = make_oracle("hyperband", n_trials=12, max_epochs=epochs, seed=1, space=SearchSpace.load("default"))
    oracle._set_project_dir(str(tmp_path), "hb")
    rounds = []
    for _ in range(12):
        trial = oracle.create_trial("tuner0")
        rounds.append(trial.hyperparameters.values["tuner/epochs"])
        oracle.update_trial(trial.trial_id, {"val_objective": 0.5})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
    assert max(rounds) == epochs and min(rounds) >= 1


def test_the_final_model_line_names_its_epochs_and_a_hyperband_round_s(tmp_path):
    """A KerasTuner Hyperband study's best trial may have won in a 1-epoch round under --epochs 3; its final model
    then trained 1 epoch, and the line announcing it did not say so."""
    from search.study import _final_model_line

    study = optuna.create_study(study_name="e", storage=f"sqlite:///{tmp_path / 'o.db'}")
    line = _final_model_line(study, 2, {"epochs": 8}, "one model trained on all search patients", 100, 50)
    assert line == ("training trial 2's final model (one model trained on all search patients, 8 epochs; 100 search "
                    "beats), testing on 50 held-out beats ...")
    study.set_user_attr("engine", "keras-tuner:hyperband")
    assert "(one model trained on all search patients, 1 epoch, the epochs of the Hyperband round it won in; 100 " \
        in _final_model_line(study, 2, {"epochs": 1}, "one model trained on all search patients", 100, 50)


def _heartbeat_csv_study(tmp_path: Path, rr_features) -> StudySettings:
    """Settings of a tiny study on a small heartbeat CSV (Kaggle layout, patient ids in .groups sidecars)."""
    from test_sources import _beat_rows, _write_csv

    folder = tmp_path / "heartbeat"
    folder.mkdir(exist_ok=True)
    _write_csv(folder / "mitbih_train.csv", _beat_rows(80, [0, 0, 1, 2], 0), [f"p{i % 4}" for i in range(80)])
    _write_csv(folder / "mitbih_test.csv", _beat_rows(20, [0, 2], 1), [f"q{i % 2}" for i in range(20)])
    space = SearchSpace.from_dict({"name": "tiny", "data": {"fs": 180, "window": 192},
                                   "params": {**TINY, "rr_features": rr_features}})
    return StudySettings(dataset="heartbeat-csv", space_yaml=space.to_yaml(), folds=2, seed=1,
                         data_path=str(folder))


@pytest.mark.parametrize("engine", ["optuna", "keras-tuner"])
def test_a_dataset_without_rr_intervals_never_draws_rr_features(tmp_path, engine):
    """heartbeat-csv has no RR intervals: both engines search with rr_features fixed to false and say so, so
    every exported model can classify a CSV of beats."""
    from search.keras_tuner_engine import run_keras_tuner

    settings = _heartbeat_csv_study(tmp_path, {"type": "categorical", "choices": [True, False]})
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    lines: list[str] = []
    if engine == "optuna":
        study = run_search("hb", settings, n_trials=2, storage=storage, tracking=None, progress=False,
                           final=False, print_fn=lines.append).study
    else:
        study = run_keras_tuner("hb", settings, tuner="random", n_trials=2, out_dir=tmp_path, progress=False,
                                storage=storage, print_fn=lines.append)["study"]
    assert "note: dataset heartbeat-csv has no RR intervals: rr_features is fixed to false for this search " \
           "(the space also allowed true)" in lines
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(done) == 2
    for t in done:
        assert "rr_features" not in t.params and t.user_attrs["config"]["rr_features"] is False


def test_a_space_that_fixes_rr_features_on_data_without_rr_intervals_is_refused(tmp_path):
    from spaces import SpaceError

    settings = _heartbeat_csv_study(tmp_path, True)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    with pytest.raises(SpaceError, match="rr_features is fixed to true in space 'tiny', but dataset heartbeat-csv has no RR"):
        run_search("hb", settings, n_trials=1, storage=storage, tracking=None, progress=False, final=False)
    assert not (tmp_path / "optuna.db").exists() or not optuna.study.get_all_study_names(storage)


def test_keras_tuner_search_stopped_by_sigterm_closes_its_runs_and_resumes(tmp_path, cli_env):
    """SIGTERM killed a KerasTuner search outright: its study run stayed RUNNING for good. After
    the resume redid the stopped trial, `sync` took the stopped trial's FAILED run for the trial and marked
    it FINISHED, so MLflow showed the trial twice as finished."""
    storage, mlflow_uri = f"sqlite:///{tmp_path / 'o.db'}", f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = ["search", "--engine", "keras-tuner", "--tuner", "random", "--dataset", "mitdb",
            "--space", tiny_space_file(tmp_path), "--trials", 2, "--folds", 2, "--max-beats", 800,
            "--records", ",".join(SMALL_RECORDS), "--study", "kts", "--no-final", "--quiet", "--storage", storage,
            "--tracking-uri", mlflow_uri, "--experiment", "test", "--out-dir", tmp_path / "runs"]
    log = tmp_path / "search.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "ecg_automl", *map(str, args)], cwd=tmp_path, env=cli_env,
                                stdout=out, stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    while "keras-tuner trial 0:" not in log.read_text() and time.time() < deadline:
        assert proc.poll() is None, log.read_text()
        time.sleep(0.5)
    client = Tracker(TrackingConfig(mlflow_uri, None, "test")).client
    exp = client.get_experiment_by_name("test").experiment_id
    while time.time() < deadline:  # into trial 1: its run is open (a fixed sleep missed it on a loaded host)
        assert proc.poll() is None, log.read_text()
        if len([r for r in client.search_runs([exp]) if r.data.tags.get("ecg_automl.kind") == "trial"]) >= 2:
            break
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 143, log.read_text()
    assert "run the same command again to resume" in log.read_text()
    assert not client.search_runs([exp], "attributes.status = 'RUNNING'")
    run_cli(args, tmp_path, cli_env, timeout=300)
    assert "0 runs created, 0 updated" in run_cli(["sync", "--study", "kts", "--storage", storage, "--tracking-uri",
                                                   mlflow_uri, "--experiment", "test"], tmp_path, cli_env).stdout
    trial_runs = [r for r in client.search_runs([exp]) if r.data.tags.get("ecg_automl.kind") == "trial"]
    assert sorted(r.info.status for r in trial_runs) == ["FAILED", "FINISHED", "FINISHED"]
    # the stopped trial's run says so (it had no reason), which tells it from its redo's run of the same number
    failed = [r for r in trial_runs if r.info.status == "FAILED"]
    assert [(r.data.tags.get("fail_reason"), r.data.tags.get("optuna.state")) for r in failed] == [
        ("interrupted (SIGTERM)", "FAIL")]


def test_fit_refuses_data_no_model_should_be_trained_on(small_mitdb):
    """No beats, one class, an empty validation set or placeholder RR intervals: a ValueError before any
    training (Keras trained on 0 beats or on normal beats only without a word, and crashed on an empty val)."""
    from search import fit

    cfg = {k: (v["choices"][0] if isinstance(v, dict) and "choices" in v else v["low"] if isinstance(v, dict) else v)
           for k, v in TINY.items()}
    search = small_mitdb.search_part()
    some = search.subset(np.r_[np.flatnonzero(search.y == 0)[:200], np.flatnonzero(search.y == 1)[:100]])
    cases = [(search.subset(np.arange(0)), None, "training set has no beats"),
             (some, some.subset(np.arange(0)), "validation set has no beats"),
             (search.subset(search.y == 0), None, "only normal beats"),
             (search.subset(search.y == 1), None, "only abnormal beats")]
    no_rr = some.subset(np.arange(len(some)))
    no_rr.info["rr_available"] = False
    cases.append((no_rr, None, "has no RR intervals"))
    for train, val, message in cases:
        with pytest.raises(ValueError, match=message):
            fit(cfg, train, val)
    with pytest.raises(ValueError, match="class_weight: 'balance' is out of range, expected one of balanced, none"):
        fit({**cfg, "class_weight": "balance"}, some)


def test_fit_throughput_leaves_out_the_validation_passes(small_mitdb):
    """beats/s is training beats over the training time alone: with a validation set many times the training set,
    the per-epoch validation passes took most of ``fit`` and the per-trial beats_per_s understated training."""
    from search import fit

    cfg = {k: (v["choices"][0] if isinstance(v, dict) and "choices" in v else v["low"] if isinstance(v, dict) else v)
           for k, v in TINY.items()}
    cfg["epochs"] = 1
    search = small_mitdb.search_part()
    train = search.subset(np.r_[np.flatnonzero(search.y == 0)[:200], np.flatnonzero(search.y == 1)[:100]])
    res = fit(cfg, train, search)
    assert 0 < res.validation_seconds < res.seconds
    assert res.beats_per_s == pytest.approx(len(train) / (res.seconds - res.validation_seconds))
    assert res.beats_per_s > len(train) / res.seconds


def test_a_training_leaves_no_traced_graph_behind(small_mitdb):
    """Each model.fit left its traced training graph in TensorFlow's global gradient registry (a tf.custom_gradient
    in Keras's optimizer, tensorflow/tensorflow#97697): about 30 MB per fit, so a study in one process grew by about
    60 MB per trial (1.1 GB at trial 0, 3.4 GB at trial 39), keras.backend.clear_session or not."""
    import gc

    from tensorflow.python.framework import ops

    from search import fit

    cfg = {k: (v["choices"][0] if isinstance(v, dict) and "choices" in v else v["low"] if isinstance(v, dict) else v)
           for k, v in TINY.items()}
    search = small_mitdb.search_part()
    train = search.subset(np.r_[np.flatnonzero(search.y == 0)[:200], np.flatnonzero(search.y == 1)[:100]])
    registry = ops._gradient_registry._registry  # the test fails here, not silently, on a TensorFlow without it
    fit(cfg, train, None, seed=0)
    gc.collect()
    graphs = sum(type(o).__name__ == "FuncGraph" for o in gc.get_objects())
    entries = set(registry)
    for seed in (1, 2):
        fit(cfg, train, None, seed=seed)
    gc.collect()
    assert [k for k in set(registry) - entries if k.startswith("CustomGradient-")] == []
    assert sum(type(o).__name__ == "FuncGraph" for o in gc.get_objects()) <= graphs


def test_balanced_class_weights_weigh_the_rare_class_up():
    """class_weight='balanced' gives each class n / (2 * its count): the rare abnormal class the larger weight, so
    both classes weigh alike in the loss (swapped, the rare class would count for even less than unweighted)."""
    from search.training import class_weights

    y = np.r_[np.zeros(90, np.int8), np.ones(10, np.int8)]
    w = class_weights(y, "balanced")
    assert w == pytest.approx({0: 100 / 180, 1: 100 / 20})
    assert w[0] * 90 == pytest.approx(w[1] * 10)
    assert class_weights(y, "none") is None and class_weights(np.zeros(5), "balanced") is None


def test_settings_no_trial_could_use_are_refused_when_made():
    """metric='F1' used to be accepted, the study written, and the first trial failed after training a
    fold; folds=1 and objectives=['f1'] failed inside the driver after the study existed."""
    with pytest.raises(ValueError, match="unknown metric 'F1'"):
        StudySettings(metric="F1")
    for folds in (1, 0, 2.5):
        with pytest.raises(ValueError, match="folds must be a whole number of at least 2"):
            StudySettings(folds=folds)
    for objectives in ([], ["f1"], ["latency"], ["quality", "speed"]):
        with pytest.raises(ValueError, match="objectives must start with 'quality'"):
            StudySettings(objectives=objectives)
    assert StudySettings(objectives=["quality", "latency", "size"], metric="auc").folds == 3


def test_final_test_refuses_a_threshold_outside_0_1_before_training(small_mitdb, monkeypatch):
    from search import final, final_test

    monkeypatch.setattr(final, "fit", lambda *a, **k: pytest.fail("trained before refusing the threshold"))
    for bad in (1.5, float("nan")):
        with pytest.raises(ValueError, match=r"threshold must be in \[0, 1\]"):
            final_test({"epochs": 1}, bad, small_mitdb)


@pytest.mark.parametrize("final_model", ["refit", "folds"])
def test_the_final_model_never_trains_or_validates_on_a_held_out_patient(small_mitdb, monkeypatch, final_model):
    """Every beat the final model's training sees (its fold models' validation beats too) is a search-part beat of a
    search patient; the report's patient counts are computed apart from what is trained on, so only this tells."""
    from search import final, final_test

    seen = []
    real_fit = final.fit

    def spy(config, train, val=None, **kwargs):
        seen.extend(d for d in (train, val) if d is not None)
        return real_fit(config, train, val, **kwargs)

    monkeypatch.setattr(final, "fit", spy)
    cfg = {k: (v["choices"][0] if isinstance(v, dict) and "choices" in v else v["low"] if isinstance(v, dict) else v)
           for k, v in TINY.items()}
    cfg["epochs"] = 1
    data = small_mitdb.subset(np.arange(len(small_mitdb)) % 4 == 0)  # every patient, a quarter of the beats
    report = final_test(cfg, 0.5, data, final_model=final_model, folds=2)
    held_out = set(data.test_part().groups)
    assert seen and held_out and report["test_patients"] == len(held_out)
    for d in seen:
        assert set(d.split) == {"search"} and not set(d.groups) & held_out
    assert sum(len(d) for d in seen) >= len(data.search_part())


def test_a_failed_trial_s_reason_keeps_the_cause_of_a_keras_layer_error():
    """A space drawing lstm_downsample 32 with input_length 16 failed its trials with the reason 'ValueError:
    Exception encountered when calling AveragePooling1D.call().', which says where, not why: Keras puts the
    cause on the next line (in ANSI bold)."""
    import keras

    from search.objective import _reason

    try:
        keras.layers.AveragePooling1D(32)(keras.Input((16, 1)))
    except ValueError as exc:
        reason = _reason(exc)
    assert reason.startswith("ValueError: Exception encountered when calling AveragePooling1D.call(). Computed "
                             "output size would be zero or negative"), reason
    assert "\x1b" not in reason and "\n" not in reason and "Arguments received" not in reason
    assert _reason(RuntimeError("first line\nsecond line")) == "RuntimeError: first line"  # others: as before


def test_a_resumed_keras_tuner_search_shows_the_study_s_best_on_each_trial_line(tmp_path, monkeypatch, capsys):
    """Resumed with more trials, its first new trial read 'keras-tuner trial 2: 0.2271 (best 0.2271)' while the
    study's best (and the summary line below it) was trial 1's 0.2379: the best counted this run's trials only.
    Training is replaced by fixed objective values: the lines are what is checked."""
    import search.keras_tuner_engine as kte

    fake_keras_tuner_training(monkeypatch, [0.9, 0.3])
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    said: list[str] = []
    for n in (1, 2):
        kte.run_keras_tuner("kt", tiny_settings(tmp_path), tuner="random", n_trials=n, out_dir=tmp_path,
                            progress=False, storage=storage, trial_print_fn=said.append)
    lines = [line for line in said if line.startswith("keras-tuner trial")]
    assert lines == ["keras-tuner trial 0: f1 0.9000 (best 0.9000)", "keras-tuner trial 1: f1 0.3000 (best 0.9000)"]


def test_a_failed_keras_tuner_trial_is_recorded_so_the_study_s_numbers_stay_its_runs(tmp_path, monkeypatch):
    """A KerasTuner trial that raised (a NaN loss, a config Keras cannot build) was not recorded in the study, and
    KerasTuner went on with the next id: the study's trial 1 was KerasTuner's trial 2, whose MLflow run is numbered
    2, and `sync` then ended the failed trial's run FINISHED with trial 2's objective."""
    import search.keras_tuner_engine as kte

    fake_keras_tuner_training(monkeypatch, [0.9, 0.3, 0.5])
    second_keras_tuner_trial_diverges(monkeypatch)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    said: list[str] = []
    kte.run_keras_tuner("ktf", tiny_settings(tmp_path), tuner="random", n_trials=3, out_dir=tmp_path, progress=False,
                        storage=storage, tracking=tracking(tmp_path), trial_print_fn=said.append)
    study = optuna.load_study(study_name="ktf", storage=storage)
    # --trials 3 counts finished trials, as the driver's: the failed one does not use one up (it ended at 2)
    assert [(t.number, t.state.name, t.value) for t in study.trials] == [(0, "COMPLETE", 0.9), (1, "FAIL", None),
                                                                         (2, "COMPLETE", 0.3), (3, "COMPLETE", 0.5)]
    assert study.trials[1].user_attrs["fail_reason"] == "RuntimeError: loss became nan at epoch 1"
    assert "keras-tuner trial 1 failed: RuntimeError: loss became nan at epoch 1" in said
    runs = mlflow_trial_runs(tmp_path, study)
    for t in study.trials:
        assert runs[t.number].info.run_id == t.user_attrs["mlflow_run_id"], t.number
    assert runs[1].info.status == "FAILED" and runs[2].data.metrics["objective.quality"] == 0.3
    tracker = Tracker(tracking(tmp_path))
    assert tracker.sync(study) == {"created": 0, "updated": 0}  # every run already says what its trial holds
    assert tracker.client.get_run(runs[1].info.run_id).info.status == "FAILED"


def test_a_keras_tuner_search_whose_trials_keep_failing_closes_its_study_run(tmp_path, monkeypatch):
    """KerasTuner stopped after 3 failed trials in a row (the driver after 10) with its own RuntimeError and a
    traceback per trial; the study's MLflow run stayed RUNNING for good. Now the driver's limit and error."""
    import search.keras_tuner_engine as kte

    fake_keras_tuner_training(monkeypatch, [])

    def diverges(*args):
        raise RuntimeError("loss became nan at epoch 1")

    monkeypatch.setattr(kte, "summarise_folds", diverges)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    from search import TrialsKeepFailingError

    with pytest.raises(TrialsKeepFailingError, match=r"stopped after 10 failed trials in a row \(the last: "
                                                     r"RuntimeError: loss became nan at epoch 1\).*study 'ktx'"):
        kte.run_keras_tuner("ktx", tiny_settings(tmp_path), tuner="random", n_trials=5, out_dir=tmp_path,
                            progress=False, storage=storage, tracking=tracking(tmp_path), print_fn=lambda s: None)
    study = optuna.load_study(study_name="ktx", storage=storage)
    assert [t.state.name for t in study.trials] == ["FAIL"] * 10
    parent = study.user_attrs["mlflow_parent_run_id"]
    assert Tracker(tracking(tmp_path)).client.get_run(parent).info.status == "FAILED"


def test_a_keras_tuner_draw_that_cannot_be_built_is_pruned_as_the_driver_prunes_it(tmp_path, monkeypatch, capsys):
    """A space may hold draws whose model cannot be built beside buildable ones; the driver prunes them before they
    train, but KerasTuner failed each in Keras and stopped after three in a row ("Number of consecutive failures
    exceeded the limit of 3") with a traceback. They are now pruned there too, saying why: a PRUNED trial in the
    study, a KILLED run in MLflow, and the worst value to KerasTuner, which goes on."""
    import dataclasses

    import search.keras_tuner_engine as kte

    fake_keras_tuner_training(monkeypatch, [0.7, 0.8, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1])
    settings = tiny_settings(tmp_path)
    space = SearchSpace.from_yaml(settings.space_yaml).with_overrides(  # 3 draws in 4 cannot be built
        input_length=16, res_blocks={"type": "int", "low": 4, "high": 7})
    settings = dataclasses.replace(settings, space_yaml=space.to_yaml())
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    said: list[str] = []
    kte.run_keras_tuner("ktp", settings, tuner="random", n_trials=8, out_dir=tmp_path, progress=False,
                        storage=storage, tracking=tracking(tmp_path), trial_print_fn=said.append)
    study = optuna.load_study(study_name="ktp", storage=storage)
    trials = study.trials
    assert len(trials) == 8
    for t in trials:
        config = t.user_attrs["config"]
        unbuildable = config["res_blocks"] > 4
        assert t.state.name == ("PRUNED" if unbuildable else "COMPLETE"), (t.number, config, t.state)
    pruned = [t for t in trials if t.state.name == "PRUNED"]
    states = "".join(t.state.name[0] for t in trials)
    assert "PPP" in states, states  # three in a row stopped it
    for t in pruned:
        blocks = t.user_attrs["config"]["res_blocks"]
        assert t.value is None and t.user_attrs["prune_reason"] == (
            f"input_length 16 is too short for res_blocks {blocks} (each block halves the window: at least "
            f"{2 ** blocks} samples needed); this draw cannot be built")
    reason = pruned[0].user_attrs["prune_reason"]
    assert f"keras-tuner trial {pruned[0].number} pruned: {reason}" in said
    runs = mlflow_trial_runs(tmp_path, study)
    for t in pruned:
        run = runs[t.number]
        assert run.info.status == "KILLED" and run.data.tags["prune_reason"] == t.user_attrs["prune_reason"]
        assert run.info.run_id == t.user_attrs["mlflow_run_id"]
    assert Tracker(tracking(tmp_path)).sync(study) == {"created": 0, "updated": 0}
    # the summary counted the complete trials alone ("5 trials recorded" of 8)
    assert (f"keras-tuner study ktp: 8 trial(s) recorded ({8 - len(pruned)} complete, {len(pruned)} pruned) in "
            in capsys.readouterr().out)


def test_sync_takes_a_trial_s_own_run_where_the_run_numbers_are_another_trial_s(tmp_path):
    """A study a KerasTuner search recorded before its failed trials were kept: KerasTuner's trial 0 failed (its
    run, numbered 0, FAILED) and its trial 1 is the study's trial 0, whose run is numbered 1. `sync` looked runs up
    by number, so it ended the failed trial's run FINISHED with trial 0's results."""
    from search.tracking import _params

    tracker = Tracker(tracking(tmp_path))
    study = optuna.create_study(study_name="old-kt", storage=f"sqlite:///{tmp_path / 'o.db'}", direction="maximize")
    parent = tracker.study_run(study, {})
    failed = tracker.start_trial(parent, 0, "old-kt", {"learning_rate": 0.003})
    tracker.client.set_terminated(failed, "FAILED")
    own = tracker.start_trial(parent, 1, "old-kt", {"learning_rate": 0.002})
    dist = {"learning_rate": optuna.distributions.FloatDistribution(1e-3, 1e-2, log=True)}
    study.add_trial(optuna.trial.create_trial(params={"learning_rate": 0.002}, distributions=dist, value=0.6,
                                              user_attrs={"mlflow_run_id": own, "threshold": 0.4}))
    (trial,) = study.trials
    tracker.end_trial(trial, own)
    assert _params(trial) == {"learning_rate": 0.002}
    assert tracker.sync(study) == {"created": 0, "updated": 0}
    assert tracker.client.get_run(failed).info.status == "FAILED"
    assert "objective.quality" not in tracker.client.get_run(failed).data.metrics


def test_resuming_with_another_pruner_says_the_other_workers_keep_the_stored_one(tmp_path, caplog):
    """--pruner on a resume applies to that process alone (the study keeps the pruner it was created with, which
    workers and later resumes use): the study's trials were then pruned two ways without a word."""
    from search import open_study

    storage = f"sqlite:///{tmp_path / 'o.db'}"
    open_study("pr", storage, tiny_settings(tmp_path), "median")
    caplog.set_level(logging.WARNING, logger="search")
    study, _ = open_study("pr", storage, None, "hyperband")
    assert isinstance(study.pruner, optuna.pruners.HyperbandPruner) and study.user_attrs["pruner"] == "median"
    assert ("study 'pr' was created with the median pruner: this process prunes with hyperband, other workers and "
            "later resumes without --pruner with median") in caplog.text
    caplog.clear()
    open_study("pr", storage, None, "median")
    open_study("pr", storage, None, None)
    assert "pruner" not in caplog.text


def test_a_pruned_trial_s_running_value_is_not_logged_as_its_objective(tmp_path):
    """Optuna gives a pruned trial its last reported value, the running mean of the pruning signal (validation
    ROC-AUC for the default metric f1), and it was logged as objective.quality: sorted by it, the MLflow UI put
    pruned trials (ROC-AUC around 0.9) above the finished ones (F1 around 0.4)."""
    tracker = Tracker(tracking(tmp_path))
    study = optuna.create_study(study_name="pr", storage=f"sqlite:///{tmp_path / 'o.db'}", direction="maximize")
    parent = tracker.study_run(study, {})
    dist = {"learning_rate": optuna.distributions.FloatDistribution(1e-3, 1e-2, log=True)}
    runs = {}
    for number, state, value in ((0, optuna.trial.TrialState.COMPLETE, 0.41),
                                 (1, optuna.trial.TrialState.PRUNED, 0.93)):
        runs[number] = tracker.start_trial(parent, number, "pr", {"learning_rate": 0.002})
        study.add_trial(optuna.trial.create_trial(
            params={"learning_rate": 0.002}, distributions=dist, value=value, state=state,
            intermediate_values={3: value} if state.name == "PRUNED" else {},
            user_attrs={"mlflow_run_id": runs[number], "objective_names": ["quality"]}))
    for t in study.trials:
        tracker.end_trial(t)
    done, pruned = (tracker.client.get_run(runs[n]).data.metrics for n in (0, 1))
    assert done["objective.quality"] == pytest.approx(0.41) and "pruned.running_mean" not in done
    assert "objective.quality" not in pruned and pruned["pruned.running_mean"] == pytest.approx(0.93)


@pytest.mark.parametrize("engine", ["optuna", "keras-tuner"])
def test_progress_false_prints_no_trial_lines(tmp_path, monkeypatch, capfd, caplog, engine):
    """``progress=False`` hid the bar, but each finished trial's line was still written to stdout (tqdm's write
    ignores a disabled bar): a notebook or batch job that asked for quiet got them anyway. They go to the search
    logger now (INFO), where a user can turn them on; the CLI's --quiet still prints them (trial_print_fn)."""
    import logging

    import search.keras_tuner_engine as kte

    caplog.set_level(logging.INFO, logger="search")
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    if engine == "optuna":
        run_search("quiet", tiny_settings(tmp_path), n_trials=1, storage=storage, tracking=None, progress=False,
                   final=False, pruner="none", print_fn=lambda s: None)
        line = "trial 0 complete: f1 "
    else:  # training replaced by a fixed value: the lines are what is checked
        fake_keras_tuner_training(monkeypatch, [0.9])
        kte.run_keras_tuner("quiet", tiny_settings(tmp_path), tuner="random", n_trials=1, out_dir=tmp_path,
                            progress=False, storage=storage, print_fn=lambda s: None)
        line = "keras-tuner trial 0: f1 0.9000 (best 0.9000)"
    out = capfd.readouterr()
    assert line not in out.out and line not in out.err, out.out[-2000:]
    assert line in caplog.text, caplog.text[-2000:]


@pytest.mark.parametrize("objectives", [["quality"], ["quality", "latency"]])
def test_a_study_left_half_created_by_a_killed_search_is_finished_not_blocked(tmp_path, objectives):
    """A search killed between Optuna's create_study and storing the study's settings left a study that every
    later run refused for good, as made by 'data pipeline version 5 or older'."""
    from search import StudyMismatchError, open_study

    storage = f"sqlite:///{tmp_path / 'o.db'}"
    optuna.create_study(study_name="half", storage=storage, direction="maximize")  # what the killed run left
    with pytest.raises(StudyMismatchError, match="never fully created"):
        open_study("half", storage, None, heartbeat=None)  # a worker cannot know the settings
    settings = tiny_settings(tmp_path, objectives=objectives)
    study, stored = open_study("half", storage, settings, heartbeat=None)
    assert stored.objectives == objectives and study.user_attrs["settings"] == stored.to_dict()
    assert [d.name.lower() for d in study.directions] == ["maximize", "minimize"][:len(objectives)]
    assert [s.study_name for s in optuna.get_all_study_summaries(storage)] == ["half"]
    assert open_study("half", storage, None, heartbeat=None)[1] == stored  # and workers may join it now


def test_an_artifact_location_that_cannot_be_written_is_refused_at_start(tmp_path):
    """artifact_location below a file (or read-only): the study ran and every model, plot and report failed to
    log, nine warnings ending 'run ecg-automl sync when the tracking server is back' (no server was down)."""
    from search import TrackingError

    blocker = tmp_path / "afile"
    blocker.write_text("")
    tracker = Tracker(TrackingConfig(f"sqlite:///{tmp_path / 'mlflow.db'}", str(blocker / "art"), "new"))
    with pytest.raises(TrackingError, match=rf"artifact location {blocker / 'art'} cannot be written \({blocker} is "
                                            r"a file, not a folder\): set artifact_location in mlflow.yaml"):
        tracker.check()
    assert tracker.client.get_experiment_by_name("new") is None  # not created with the bad location
    good = tmp_path / "art"
    Tracker(TrackingConfig(f"sqlite:///{tmp_path / 'mlflow.db'}", str(good), "kept")).check()
    good.rmdir()
    good.write_text("")  # the existing experiment's folder is now a file
    with pytest.raises(TrackingError, match="experiment 'kept' keeps the artifact location it was created with"):
        Tracker(TrackingConfig(f"sqlite:///{tmp_path / 'mlflow.db'}", None, "kept")).check()


def test_a_ctrl_c_landing_in_a_finaliser_prints_no_traceback(monkeypatch):
    """Ctrl-C landing in a finaliser (often, while TensorFlow trains) made the interpreter print 'Exception ignored
    in: <function _collection_gced ...> Traceback ... KeyboardInterrupt' above the one-line message."""
    from search import interrupt

    seen = []
    monkeypatch.setattr(sys, "unraisablehook", lambda args: seen.append(args.exc_type))

    class Finalised:
        def __init__(self, exc):
            self.exc = exc

        def __del__(self):
            if self.exc is KeyboardInterrupt:
                interrupt._handler(signal.SIGINT, None)
            raise self.exc

    previous = interrupt.install()
    try:
        Finalised(KeyboardInterrupt)  # dropped at once: __del__ runs here, its exception is "unraisable"
        assert interrupt.requested()
        with pytest.raises(KeyboardInterrupt):
            interrupt.check()  # the request is not lost
        Finalised(ValueError)  # any other finaliser error is still reported
    finally:
        interrupt.restore(previous)
    assert seen == [ValueError]
    Finalised(KeyboardInterrupt)  # outside a search: reported as before
    assert seen == [ValueError, KeyboardInterrupt]
    interrupt.clear()


def test_the_study_run_is_closed_when_a_timeout_ends_the_search_and_reopened_by_the_next_trial(tmp_path):
    """A search that --timeout stops before its trial count left the study's MLflow run RUNNING for good; a
    trial that another worker starts after one closed the run marks it RUNNING again."""
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    result = run_search("to", tiny_settings(tmp_path), n_trials=3, storage=storage, tracking=tracking(tmp_path),
                        timeout=0.01, progress=False, final=False)
    assert len(result.study.trials) == 1 and not result.interrupted
    tracker = Tracker(tracking(tmp_path))
    parent = result.study.user_attrs["mlflow_parent_run_id"]
    assert tracker.client.get_run(parent).info.status == "FINISHED"
    tracker.start_trial(parent, 1, "to", {"epochs": 1})  # a worker that joins the study later
    assert tracker.client.get_run(parent).info.status == "RUNNING"


def test_study_figures_show_history_and_importances_once_there_are_enough_trials():
    """Which hyperparameters mattered is a plot on the study's run; with a handful of trials it would be noise."""
    from search import plots

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: t.suggest_int("units", 8, 64) / 64 + 0.01 * t.suggest_float("lr", 1e-4, 1e-1, log=True),
                   n_trials=plots.MIN_TRIALS_FOR_IMPORTANCES - 1)
    assert set(plots.study_figures(study, "auc")) == {"optimization_history.png"}
    study.optimize(lambda t: t.suggest_int("units", 8, 64) / 64 + 0.01 * t.suggest_float("lr", 1e-4, 1e-1, log=True),
                   n_trials=1)
    figures = plots.study_figures(study, "auc")
    assert set(figures) == {"optimization_history.png", "param_importances.png"}
    ax = figures["param_importances.png"].axes[0]
    assert ax.get_title() == f"study {study.study_name}: hyperparameter importances (10 complete trials)"
    assert [t.get_text() for t in ax.get_yticklabels()][-1] == "units"  # the one that matters, on top
    assert figures["optimization_history.png"].axes[0].get_ylabel() == "validation auc"
    assert plots.study_figures(optuna.create_study(directions=["maximize", "minimize"])) == {}


def test_keras_tuner_engine_checks_its_folds_for_leaking_patients(tmp_path, monkeypatch):
    """The KerasTuner engine split with patient_kfold(...).split directly, so a splitter that let a patient's beats
    into both sides of a fold would have gone unchecked there (the driver's objective checks every fold)."""
    from sklearn.model_selection import KFold

    from ecg_data.splits import PatientLeakError
    import search.keras_tuner_engine as kte

    monkeypatch.setattr(kte, "patient_kfold", lambda n, seed=0: KFold(n, shuffle=True, random_state=seed))
    with pytest.raises(PatientLeakError, match="patients on both sides"):
        kte.run_keras_tuner("kt-leak", tiny_settings(tmp_path), tuner="random", n_trials=1, tracking=None,
                            out_dir=tmp_path, progress=False, storage=None, final=False)


def test_the_optuna_driver_checks_its_folds_for_leaking_patients(small_mitdb):
    """The driver's objective checks every fold of the splitter it is given (grouped_splits): a ``cv=`` that lets a
    patient's beats into both sides of a fold is refused before any trial, as in the KerasTuner engine."""
    from sklearn.model_selection import GroupKFold, KFold

    from ecg_data.splits import PatientLeakError
    from search import CVObjective

    search, space = small_mitdb.search_part(), SearchSpace.load("default")
    with pytest.raises(PatientLeakError, match="patients on both sides"):
        CVObjective(search, space, KFold(2, shuffle=True, random_state=0))
    assert len(CVObjective(search, space, GroupKFold(2)).folds) == 2  # a grouped splitter is taken as it is


def test_a_final_model_folder_that_cannot_be_written_is_refused_before_training(tmp_path, small_mitdb,
                                                                                 monkeypatch):
    """A file where the final model's folder should be: the model was trained, then model.save raised
    NotADirectoryError (a traceback); a save that fails anyway (a full disk) is one clear error, too."""
    from search import OutputError, final, final_test
    from search.final import save_model

    blocker = tmp_path / "afile"
    blocker.write_text("")
    monkeypatch.setattr(final, "fit", lambda *a, **k: pytest.fail("trained before refusing the folder"))
    with pytest.raises(OutputError, match=rf"cannot save the final model in {blocker / 'x'}: {blocker} is a file"):
        final_test({"epochs": 1}, 0.5, small_mitdb, out_path=blocker / "x" / "final-trial0.keras")

    class Full:
        def save(self, path):
            raise OSError(28, "No space left on device")

    with pytest.raises(OutputError, match=r"cannot save the final model as .*m\.keras: No space left on device"):
        save_model(Full(), tmp_path / "runs" / "m.keras")


def test_a_final_model_save_is_whole_or_not_at_all(tmp_path):
    """A search killed while it saved the final model left a 0-byte final-trial0.keras, which the next search took
    for another study's model. The save writes beside the file and renames it into place; the partial file a
    killed save left is removed by the next save (not one a live process is writing)."""
    import os

    from search.final import save_model

    class Killed:
        def save(self, path):
            Path(path).write_bytes(b"half a model")  # then kill -9
            raise KeyboardInterrupt

    class Whole:
        def save(self, path):
            assert Path(path).suffix == ".keras"  # Keras refuses another
            Path(path).write_bytes(b"a model")

    out = tmp_path / "runs" / "s" / "final-trial0.keras"
    with pytest.raises(KeyboardInterrupt):
        save_model(Killed(), out)
    assert not out.exists()
    left = list(out.parent.glob(".final-trial0.*"))
    assert len(left) == 1 and left[0].name == f".final-trial0.{os.getpid()}.tmp.keras"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left[0].rename(out.parent / f".final-trial0.{dead.pid}.tmp.keras")  # as a killed search left it
    live = out.parent / f".final-trial0.{os.getppid()}.tmp.keras"  # another search's save, going on now
    live.write_bytes(b"")
    assert save_model(Whole(), out) == out and out.read_bytes() == b"a model"
    assert sorted(p.name for p in out.parent.iterdir()) == sorted([out.name, live.name])


def test_why_not_writable_walks_up_to_the_first_folder_there(tmp_path, monkeypatch):
    import os

    from search.folders import why_not_writable

    (tmp_path / "afile").write_text("")
    assert why_not_writable(tmp_path / "new" / "deeper") is None
    assert why_not_writable(tmp_path / "afile" / "x") == f"{tmp_path / 'afile'} is a file, not a folder"
    monkeypatch.setattr(os, "access", lambda path, mode: str(path) != str(tmp_path))  # a read-only folder
    assert why_not_writable(tmp_path / "new") == f"{tmp_path} is not writable"
    assert not (tmp_path / "new").exists()


def test_a_data_path_that_is_not_there_is_named_with_the_way_out(tmp_path, monkeypatch):
    """A study whose data had moved only said "/old/hb does not exist"; one made with a relative --data-path and
    exported from another folder said the same of a path the user never typed. (The path is kept as given: workers
    on other machines may hold the data at the same relative place, not the same absolute one.)"""
    from ecg_data import DataError
    from search.study import load_study_data

    settings = _heartbeat_csv_study(tmp_path, False)
    space = SearchSpace.from_yaml(settings.space_yaml)
    relative = StudySettings(**{**settings.to_dict(), "data_path": "heartbeat"})
    assert relative.data_path == "heartbeat"
    monkeypatch.chdir(tmp_path)
    assert len(load_study_data(relative, space).y) == 100  # read from the folder the command runs in
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with pytest.raises(DataError, match=f"--data-path heartbeat does not exist in {elsewhere} \\(a relative path is read "
                                        r"from the folder a command runs in: run export, a worker or a resume from "
                                        r"the folder the study was made in\)"):
        load_study_data(relative, space)
    (tmp_path / "heartbeat").rename(tmp_path / "moved")
    with pytest.raises(DataError, match=f"--data-path {tmp_path / 'heartbeat'} does not exist; for an existing study "
                                        r"put the same files there"):
        load_study_data(settings, space)


def test_a_trial_the_setup_cannot_measure_stops_the_run_at_once_and_is_queued_again(tmp_path, small_mitdb):
    """A bench-server stopped after trial 0: trials 1-10 each failed 'cannot reach bench-server' before the run
    stopped, ten draws lost. An error that is the setup's (``stops_study``) stops the run at its first trial, and
    that trial's params are queued to be redone."""
    import optuna

    from ecg_automl.tflite import LatencyTargetError
    from search import TrialsKeepFailingError
    from search.study import run_trials

    class GoneServer:  # the latency gate, once the bench-server has gone
        def __call__(self, config, trial):
            raise LatencyTargetError("cannot reach bench-server http://pi:8765 (refused)")

    settings = tiny_settings(tmp_path)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    with pytest.raises(TrialsKeepFailingError, match=r"stopped at trial 0: LatencyTargetError: cannot reach "
                                                     r"bench-server .*queued again"):
        run_trials(study, settings, n_trials=5, data=small_mitdb, space=SearchSpace.load(tiny_space_file(tmp_path)),
                   tracker=None, gates=[GoneServer()], progress=False)
    failed, queued = study.trials
    assert failed.state.name == "FAIL" and failed.user_attrs["stops_study"] and failed.user_attrs["requeued"]
    assert queued.state.name == "WAITING" and queued.user_attrs["retry_of"] == 0
    assert queued.system_attrs["fixed_params"] == failed.params


def test_keras_tuner_bayesian_draws_the_driver_s_start_up_count_at_random_then_models(tmp_path, monkeypatch):
    """KerasTuner's Bayesian oracle drew 3 random points per hyperparameter (66 here) before its Gaussian process:
    every trial of a 20-trial search was random search's. It now starts as the driver's TPE does."""
    import search.keras_tuner_engine as kte
    from search.samplers import tpe_startup_trials

    built = []
    make = kte.make_oracle
    monkeypatch.setattr(kte, "make_oracle", lambda *a, **k: built.append(make(*a, **k)) or built[-1])
    fake_keras_tuner_training(monkeypatch, [0.5] * 10)
    settings = tiny_settings(tmp_path)
    kte.run_keras_tuner("ktb", settings, tuner="bayesian", n_trials=1, out_dir=tmp_path, progress=False)
    assert built[0].num_initial_points == tpe_startup_trials(settings.folds) == 6


def test_keras_tuner_state_of_another_search_is_refused_before_the_data_loads(tmp_path, monkeypatch):
    """KerasTuner resumes whatever its folder holds: a search with a new storage found the old search complete and
    ran nothing (exit 0, no final test), and one with a changed space drew from the old ranges, clamped to the new."""
    import dataclasses

    import search.keras_tuner_engine as kte
    from search import StudyMismatchError

    fake_keras_tuner_training(monkeypatch, [0.5] * 10)
    settings = tiny_settings(tmp_path)
    kte.run_keras_tuner("kts", settings, tuner="random", n_trials=1, out_dir=tmp_path, progress=False,
                        storage=f"sqlite:///{tmp_path / 'a.db'}")
    monkeypatch.setattr(kte, "load_study_data", lambda *a: pytest.fail("the data loaded before the refusal"))
    with pytest.raises(StudyMismatchError, match=r"keras_tuner/kts holds KerasTuner's state of another search "
                                                 r"\(its storage differ\).*Remove that folder"):
        kte.run_keras_tuner("kts", settings, tuner="random", n_trials=2, out_dir=tmp_path, progress=False,
                            storage=f"sqlite:///{tmp_path / 'b.db'}")
    other = dataclasses.replace(settings, space_yaml=SearchSpace.from_yaml(settings.space_yaml).with_overrides(
        learning_rate={"type": "float", "low": 0.02, "high": 0.05}).to_yaml())
    with pytest.raises(StudyMismatchError, match=r"its storage, settings differ: space_yaml\)"):
        kte.run_keras_tuner("kts", other, tuner="random", n_trials=2, out_dir=tmp_path, progress=False)
    # the same space in another order is the same search's (refused as another's space_yaml before)
    doc = yaml.safe_load(settings.space_yaml)
    doc["params"] = dict(reversed(list(doc["params"].items())))
    same = dataclasses.replace(settings, space_yaml=yaml.safe_dump(doc, sort_keys=False))
    fingerprint = json.loads((tmp_path / "keras_tuner" / "kts" / kte.STATE_FILE).read_text())
    kte.check_tuner_state(tmp_path / "keras_tuner" / "kts", {**fingerprint, "settings": kte._stamped(same).to_dict()},
                          fingerprint["storage"])


def test_a_keras_tuner_study_resumed_without_its_state_is_refused(tmp_path, monkeypatch):
    """Resumed from another --out-dir (or working folder), KerasTuner trained every earlier trial again and the
    study then dropped each redo as recorded before: minutes of training for nothing, under a normal-looking run."""
    import search.keras_tuner_engine as kte
    from search import StudyMismatchError

    fake_keras_tuner_training(monkeypatch, [0.5] * 10)
    settings, storage = tiny_settings(tmp_path), f"sqlite:///{tmp_path / 'o.db'}"
    kte.run_keras_tuner("ktr", settings, tuner="random", n_trials=1, out_dir=tmp_path / "one", progress=False,
                        storage=storage)
    with pytest.raises(StudyMismatchError, match=r"study 'ktr' holds 1 KerasTuner trials, but KerasTuner's state is "
                                                 r"not in .*two/keras_tuner/ktr \(it was made in .*one/keras_tuner/ktr\)"):
        kte.run_keras_tuner("ktr", settings, tuner="random", n_trials=2, out_dir=tmp_path / "two", progress=False,
                            storage=storage)
    (tmp_path / "three").mkdir()
    (tmp_path / "three" / "keras_tuner").write_text("a file")
    with pytest.raises(StudyMismatchError, match="keras_tuner/x: KerasTuner keeps its state in this folder, but a file"):
        kte.run_keras_tuner("x", settings, tuner="random", n_trials=1, out_dir=tmp_path / "three", progress=False)


def test_a_ctrl_c_turned_into_another_error_stops_a_keras_tuner_search_and_the_trial_is_redone(tmp_path, monkeypatch):
    """TensorFlow can turn the Ctrl-C into another error; KerasTuner then failed the trial and went on to the next
    (which stopped at once), so the interrupted trial was lost: never redone, and --trials 4 ended with 3."""
    import types

    import search.keras_tuner_engine as kte
    from search import interrupt

    fake_keras_tuner_training(monkeypatch, [0.5] * 10)
    calls = []

    def fit(config, train, val, seed, on_epoch_end=None, verbose=0):
        calls.append(seed)
        if len(calls) == 3:  # trial 1, fold 0
            monkeypatch.setattr(interrupt, "requested", lambda: True)
            raise TypeError("Failed to convert elements of (None,) to Tensor")
        return types.SimpleNamespace(val_prob=np.full(len(val), 0.5), seconds=0.1, validation_seconds=0.01,
                                     beats_per_s=10.0, model=None)

    monkeypatch.setattr(kte, "fit", fit)
    storage = f"sqlite:///{tmp_path / 'o.db'}"
    with pytest.raises(KeyboardInterrupt):
        kte.run_keras_tuner("kti", tiny_settings(tmp_path), tuner="random", n_trials=3, out_dir=tmp_path,
                            progress=False, storage=storage)
    assert [t.state.name for t in optuna.load_study(study_name="kti", storage=storage).trials] == ["COMPLETE"]


def test_a_keras_tuner_trial_with_no_defined_value_fails_as_the_driver_s(tmp_path, monkeypatch):
    """A NaN objective (every validation fold of one class) was reported as the trial's value, and a first trial's
    NaN was the 'best' on every later line and in the result."""
    import search.keras_tuner_engine as kte

    fake_keras_tuner_training(monkeypatch, [float("nan"), 0.7])
    said: list[str] = []
    out = kte.run_keras_tuner("ktn", tiny_settings(tmp_path), tuner="random", n_trials=1, out_dir=tmp_path,
                              progress=False, storage=f"sqlite:///{tmp_path / 'o.db'}", trial_print_fn=said.append)
    assert said[:2] == ["keras-tuner trial 0 failed: ValueError: validation f1 is undefined: every validation fold "
                        "holds one class only", "keras-tuner trial 1: f1 0.7000 (best 0.7000)"]
    assert out["best"]["value"] == 0.7 and [t.state.name for t in out["study"].trials] == ["FAIL", "COMPLETE"]


def test_a_keras_tuner_search_that_runs_out_of_configs_says_so(tmp_path, monkeypatch):
    """A space with few distinct configs ended KerasTuner's search early without a word ('asked 6, ran 2')."""
    import dataclasses

    import search.keras_tuner_engine as kte

    fake_keras_tuner_training(monkeypatch, [0.5] * 10)
    settings = tiny_settings(tmp_path)
    space = SearchSpace.from_yaml(settings.space_yaml)
    fixed = {k: space.config_from_params({k2: v["choices"][0] if v["type"] == "categorical" else v["low"]
                                           for k2, v in space.params.items() if isinstance(v, dict)})[k]
             for k in space.params}
    fixed["pool"] = {"type": "categorical", "choices": ["max", "avg"]}
    settings = dataclasses.replace(settings, space_yaml=space.with_overrides(**fixed).to_yaml())
    said: list[str] = []
    out = kte.run_keras_tuner("kte", settings, tuner="random", n_trials=6, out_dir=tmp_path, progress=False,
                              trial_print_fn=said.append)
    assert len(out["history"]) == 2
    assert any("stopped after 2 of 6 trials: it found no new configuration" in line for line in said), said


def test_a_keras_tuner_search_with_an_unreachable_tracking_server_leaves_no_study(tmp_path, monkeypatch):
    """The KerasTuner engine loaded the data and wrote the study before it asked MLflow: an unreachable server
    left an empty study behind, which a corrected command could then be refused on."""
    import search.keras_tuner_engine as kte
    from search import TrackingError

    monkeypatch.setattr(kte, "load_study_data", lambda *a: pytest.fail("the data loaded before MLflow was asked"))
    storage = f"sqlite:///{tmp_path / 'o.db'}"
    with pytest.raises(TrackingError):
        kte.run_keras_tuner("ktu", tiny_settings(tmp_path), tuner="random", n_trials=1, out_dir=tmp_path,
                            progress=False, storage=storage,
                            tracking=TrackingConfig("http://127.0.0.1:9", None, "test"))
    assert optuna.get_all_study_names(storage) == [] if (tmp_path / "o.db").exists() else True


def test_a_worker_or_resume_on_other_data_is_refused_before_it_trains(tmp_path, monkeypatch):
    """The study stored its dataset's name and records but not what loaded: a worker whose copy lacked a record (or
    skipped a bad one, or held another PTB-XL subset) joined and put trials on other patients' folds in the study."""
    import search.study as st
    from search import StudyMismatchError

    settings, storage = tiny_settings(tmp_path), f"sqlite:///{tmp_path / 'o.db'}"
    run_search("dfp", settings, n_trials=0, storage=storage, final=False, progress=False, print_fn=lambda s: None)
    stored = optuna.load_study(study_name="dfp", storage=storage).user_attrs["data_fingerprint"]
    load = st.load_study_data

    def one_patient_fewer(settings, space):
        data = load(settings, space)
        return data.subset(np.flatnonzero(data.groups != data.groups[0]))

    monkeypatch.setattr(st, "load_study_data", one_patient_fewer)
    said = f"{stored['beats']:,} beats of {stored['patients']} patients"
    for given in (None, settings):  # a worker, a resume
        with pytest.raises(StudyMismatchError, match=f"study 'dfp' was searched on other data: {said} .* then, "
                                                     f".* of {stored['patients'] - 1} patients .* here"):
            run_search("dfp", given, n_trials=1, storage=storage, final=False, progress=False)
    assert optuna.load_study(study_name="dfp", storage=storage).trials == []
    monkeypatch.setattr(st, "load_study_data", load)  # the study's data: joined as before
    run_search("dfp", None, n_trials=0, storage=storage, final=False, progress=False, print_fn=lambda s: None)


def test_a_worker_whose_pi_estimates_use_another_basis_is_refused(tmp_path, monkeypatch):
    """Workers on other hosts each timed candidates on their own CPU through their own host->Pi fit, and the study
    stored neither: one front held a model 1.8x faster on one host, with 18x fewer MACs, at twice the slower one's
    "Pi latency". The study now records its basis, and a worker or resume on another is refused before it trains."""
    from ecg_automl.tflite import pi_estimate
    from search import StudyMismatchError

    monkeypatch.delenv(pi_estimate.CALIBRATION_ENV, raising=False)
    settings, storage = tiny_settings(tmp_path, objectives=["quality", "latency"]), f"sqlite:///{tmp_path / 'o.db'}"
    run_search("lb", settings, n_trials=0, storage=storage, final=False, progress=False, print_fn=lambda s: None)
    basis = optuna.load_study(study_name="lb", storage=storage).user_attrs["latency_basis"]
    here = pi_estimate.host_cpu_name()
    assert basis["timed_on"] == here and basis["fit_measured_on"] == pi_estimate.HOST_CPU_NAME
    epyc = ROOT / "benchmarks" / "results" / "pi_calibration_amd_epyc.json"
    monkeypatch.setenv(pi_estimate.CALIBRATION_ENV, str(epyc))  # another fit (a host's own file)
    for given in (None, settings):  # a worker, a resume
        with pytest.raises(StudyMismatchError, match=r"study 'lb' estimates Raspberry Pi latency from host timings "
                                                     r"timed on .* through the fit measured on .*\(another fit: "
                                                     r"ECG_AUTOML_PI_CALIBRATION differs\)"):
            run_search("lb", given, n_trials=1, storage=storage, final=False, progress=False)
    monkeypatch.setattr(pi_estimate, "host_cpu_name", lambda: "Another CPU")  # another host, the same fit
    monkeypatch.delenv(pi_estimate.CALIBRATION_ENV)
    pi_estimate._ACTIVE.clear()
    with pytest.raises(StudyMismatchError, match=r"here they would be timed on 'Another CPU' .*--latency-target"):
        run_search("lb", None, n_trials=1, storage=storage, final=False, progress=False)
    assert optuna.load_study(study_name="lb", storage=storage).trials == []
    monkeypatch.undo()
    pi_estimate._ACTIVE.clear()
    run_search("lb", None, n_trials=0, storage=storage, final=False, progress=False, print_fn=lambda s: None)


def test_a_ctrl_c_while_optuna_stores_a_finished_trial_keeps_it_and_stops_cleanly(tmp_path, monkeypatch):
    """A Ctrl-C (or SIGTERM) raised inside Optuna's write of a finished trial left it RUNNING (redone after the
    heartbeat's grace) and Optuna's own clean-up failed with an UnboundLocalError traceback. The request now waits
    for the write: the trial is stored COMPLETE and the search stops as interrupted."""
    import os
    import signal
    import types

    import optuna.storages._rdb.storage as rdb
    import search.objective as obj

    monkeypatch.setattr(obj, "fit", lambda config, train, val, seed, on_epoch_end=None, verbose=0: types.SimpleNamespace(
        val_prob=np.linspace(0, 1, len(val)), seconds=0.1, validation_seconds=0.01, beats_per_s=10.0, model=None))
    real = rdb.RDBStorage.set_trial_state_values

    def ctrl_c_while_storing(self, trial_id, state, values=None):
        if state == optuna.trial.TrialState.COMPLETE:
            os.kill(os.getpid(), signal.SIGINT)  # delivered here, in the middle of the write
        return real(self, trial_id, state, values)

    monkeypatch.setattr(rdb.RDBStorage, "set_trial_state_values", ctrl_c_while_storing)
    storage = f"sqlite:///{tmp_path / 'o.db'}"
    said: list[str] = []
    result = run_search("cc", tiny_settings(tmp_path), n_trials=3, storage=storage, final=False, progress=False,
                        print_fn=said.append, trial_print_fn=said.append)
    assert result.interrupted
    assert [t.state.name for t in optuna.load_study(study_name="cc", storage=storage).trials] == ["COMPLETE"]
    assert any(line.startswith("interrupted while no trial of this process was running") for line in said), said


def test_a_ctrl_c_while_optuna_stores_a_failed_trial_keeps_it_too(tmp_path, monkeypatch):
    """The deferral covered a returned value or a pruned trial; a trial that raised (stored FAIL by Optuna) still
    broke the same way when the Ctrl-C came during that write."""
    import os
    import signal

    import optuna.storages._rdb.storage as rdb
    import search.objective as obj

    def fails(*args, **kwargs):
        raise RuntimeError("a setup problem")

    monkeypatch.setattr(obj, "fit", fails)
    real = rdb.RDBStorage.set_trial_state_values

    def ctrl_c_while_storing(self, trial_id, state, values=None):
        if state == optuna.trial.TrialState.FAIL:
            os.kill(os.getpid(), signal.SIGINT)
        return real(self, trial_id, state, values)

    monkeypatch.setattr(rdb.RDBStorage, "set_trial_state_values", ctrl_c_while_storing)
    storage = f"sqlite:///{tmp_path / 'o.db'}"
    result = run_search("ccf", tiny_settings(tmp_path), n_trials=3, storage=storage, final=False, progress=False,
                        print_fn=lambda s: None, trial_print_fn=lambda s: None)
    assert result.interrupted
    assert [t.state.name for t in optuna.load_study(study_name="ccf", storage=storage).trials] == ["FAIL"]


def test_a_sigterm_swallowed_before_the_trials_stops_the_search(tmp_path, monkeypatch):
    """A SIGTERM whose KeyboardInterrupt a finaliser swallowed while the data loaded (the search command's handler
    set the flag) was forgotten: the trial loop cleared it before its own handler went in, and the search ran its
    trials and final model and exited 0. It now stops before the first trial, the study left to resume."""
    import signal

    from search import interrupt

    interrupt.clear()
    outer = interrupt.install()  # the search command's, for its whole length (cli._interruptible)
    try:
        import search.study as study_module

        load = study_module.load_study_data

        def load_and_swallow(*args, **kwargs):
            data = load(*args, **kwargs)
            interrupt.defer()  # as in a finaliser: the handler's KeyboardInterrupt never reaches the code
            interrupt._handler(signal.SIGTERM, None)
            interrupt.undefer()
            return data

        monkeypatch.setattr(study_module, "load_study_data", load_and_swallow)
        result = run_search("swallowed", tiny_settings(tmp_path), n_trials=1, storage=f"sqlite:///{tmp_path / 'o.db'}",
                            tracking=None, progress=False, final=True, out_dir=tmp_path)
        assert result.interrupted and result.final is None and result.study.trials == []
        assert interrupt.requested() and interrupt.exit_code() == 143  # the command's exit code
    finally:
        interrupt.restore(outer)
        interrupt.clear()
    assert not interrupt.active()


def test_a_ctrl_c_between_a_finished_trial_and_its_write_keeps_the_trial(monkeypatch):
    """A Ctrl-C/SIGTERM landing after the objective returned, before the write was held, made Optuna store the
    finished trial FAIL, without the mark that redoes it on resume: its value was lost for good."""
    from types import SimpleNamespace

    from search import interrupt
    from search.study import _noting_taken

    real, calls = interrupt.defer, []

    def defer():  # the signal comes just as the write is about to be held
        calls.append(1)
        if len(calls) == 1:
            interrupt._requested.set()
            raise KeyboardInterrupt
        real()

    monkeypatch.setattr(interrupt, "defer", defer)
    try:
        assert _noting_taken(lambda trial: 0.625, [])(SimpleNamespace(number=0)) == 0.625
        assert len(calls) == 2 and interrupt._deferred[0] and interrupt.requested()
        with pytest.raises(KeyboardInterrupt):  # in the trial itself: raised, as before
            _noting_taken(lambda trial: (_ for _ in ()).throw(KeyboardInterrupt), [])(SimpleNamespace(number=1))
    finally:
        interrupt.clear()


def test_a_second_ctrl_c_is_not_held_by_a_deferred_write():
    """A first Ctrl-C waits for the write it came in; a second one stops at once (a stalled database write held
    the process until it was done)."""
    import os
    import signal

    from search import interrupt

    interrupt.clear()
    previous = interrupt.install()
    try:
        interrupt.defer()
        os.kill(os.getpid(), signal.SIGINT)  # held
        assert interrupt.requested()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(100):  # the signal is handled between bytecodes
                pass
    finally:
        interrupt.undefer()
        interrupt.restore(previous)
        interrupt.clear()


def test_a_keras_tuner_search_in_a_new_folder_with_its_storage_there_starts(tmp_path, monkeypatch):
    """The KerasTuner state check opened the study storage before anything had made its folder: a first search
    with the default storage (runs/optuna.db) in a new folder died with "unable to open database file"; and where
    the folder existed it created an empty database before the input was accepted."""
    import search.keras_tuner_engine as kte

    fake_keras_tuner_training(monkeypatch, [0.5] * 4)
    settings = tiny_settings(tmp_path)
    monkeypatch.chdir(tmp_path)
    out = kte.run_keras_tuner("ktn", settings, tuner="random", n_trials=1, progress=False,
                              storage="sqlite:///runs/optuna.db")  # the CLI's default, runs/ not made yet
    assert [t.state.name for t in out["study"].trials] == ["COMPLETE"]
    (tmp_path / "empty").mkdir()
    kte.check_tuner_state(tmp_path / "empty" / "keras_tuner" / "x", {"study": "x"}, f"sqlite:///{tmp_path / 'empty' / 'o.db'}")
    assert not (tmp_path / "empty" / "o.db").exists()


def test_a_keras_tuner_resume_with_the_study_s_own_settings_or_an_older_state_file_is_accepted(tmp_path, monkeypatch):
    """The state file held the settings as given and was compared key by key: a resume with the settings the study
    returns (pipeline version filled in), or a file written before a settings field existed, was refused."""
    import json

    import search.keras_tuner_engine as kte
    from search import open_study

    fake_keras_tuner_training(monkeypatch, [0.5] * 4)
    settings, storage = tiny_settings(tmp_path), f"sqlite:///{tmp_path / 'o.db'}"
    kte.run_keras_tuner("kto", settings, tuner="random", n_trials=1, out_dir=tmp_path, progress=False, storage=storage)
    _, stored = open_study("kto", storage)
    state = tmp_path / "keras_tuner" / "kto" / kte.STATE_FILE
    old = json.loads(state.read_text())
    del old["settings"]["fold_repeats"]  # a field an older version did not have
    state.write_text(json.dumps(old))
    out = kte.run_keras_tuner("kto", stored, tuner="random", n_trials=2, out_dir=tmp_path, progress=False,
                              storage=storage)
    assert [t.state.name for t in out["study"].trials] == ["COMPLETE", "COMPLETE"]


def test_a_resumed_keras_tuner_search_still_counts_only_finished_trials_and_redoes_no_failure(tmp_path, monkeypatch):
    """KerasTuner does not keep max_trials: a resume lost the extra trial a failed one had earned (--trials 3 after
    a --trials 2 run with a failure ran nothing). And its own failure stop raised before the last failure was saved:
    the resume ran that trial again and dropped its result as recorded before; its check also found the old run of
    failures in the history and stopped the resume at its first trial."""
    import search.keras_tuner_engine as kte
    from search import TrialsKeepFailingError

    fake_keras_tuner_training(monkeypatch, [0.9, 0.3, 0.5])
    second_keras_tuner_trial_diverges(monkeypatch)
    storage = f"sqlite:///{tmp_path / 'o.db'}"
    for n in (2, 3):
        out = kte.run_keras_tuner("ktr", tiny_settings(tmp_path), tuner="random", n_trials=n, out_dir=tmp_path,
                                  progress=False, storage=storage)
    assert [t.state.name for t in out["study"].trials] == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]

    fake_keras_tuner_training(monkeypatch, [])
    monkeypatch.setattr(kte, "summarise_folds", lambda *a: (_ for _ in ()).throw(RuntimeError("device gone")))
    with pytest.raises(TrialsKeepFailingError, match="stopped after 10 failed trials in a row"):
        kte.run_keras_tuner("ktf", tiny_settings(tmp_path), tuner="random", n_trials=3, out_dir=tmp_path,
                            progress=False, storage=storage)
    fake_keras_tuner_training(monkeypatch, [0.4, 0.6, 0.7])  # the cause fixed: the same command again
    out = kte.run_keras_tuner("ktf", tiny_settings(tmp_path), tuner="random", n_trials=3, out_dir=tmp_path,
                              progress=False, storage=storage)
    states = [t.state.name for t in out["study"].trials]
    assert states == ["FAIL"] * 10 + ["COMPLETE"] * 3, states  # --trials 3 finished, as the driver's
    assert [h["value"] for h in out["history"]] == [0.4, 0.6, 0.7]


def test_delete_removes_a_study_whole_and_leaves_what_is_not_its_own(tmp_path, cli_env):
    """Optuna's delete-study left the study's MLflow runs (a model per trial) and its final model file, with nothing
    to say whose they were. `ecg-automl delete` removes the study, its runs (marked deleted) and the file; a file
    another study of the name saved over is left, and a study with a trial RUNNING is refused."""
    import types

    from conftest import run_cli

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    cfg = tracking(tmp_path)
    result = run_search("gone", tiny_settings(tmp_path), n_trials=1, storage=storage, tracking=cfg,
                        out_dir=tmp_path / "runs", progress=False, pruner="none", print_fn=lambda s: None)
    model = Path(result.final["model_path"])
    tracker = Tracker(cfg)
    parent = result.study.user_attrs["mlflow_parent_run_id"]
    runs = [parent, *(r.info.run_id for r in mlflow_trial_runs(tmp_path, result.study).values())]
    mlflow = ["--tracking-uri", cfg.tracking_uri]
    proc = run_cli(["delete", "--study", "gone", "--storage", storage, *mlflow], tmp_path, cli_env, check=False)
    assert proc.returncode == 2 and "pass --yes to delete without being asked" in proc.stderr, proc.stderr[-2000:]
    assert f"2 MLflow run(s): the study run {parent} and 1 trial run(s)" in proc.stdout and f"file {model}" in proc.stdout
    assert model.exists()  # asked, not answered: nothing deleted
    # another tracking store (a relative default one read from another folder): the study is the only record of
    # which runs were its, so it is not deleted without them; and no empty store is left there
    elsewhere = tmp_path / "elsewhere" / "mlflow.db"
    proc = run_cli(["delete", "--study", "gone", "--storage", storage, "--tracking-uri", f"sqlite:///{elsewhere}",
                    "--yes"], tmp_path, cli_env, check=False)
    assert proc.returncode == 2 and f"logs to MLflow run {parent}, which is not in the tracking store" in proc.stderr
    assert "or --no-mlflow to delete the study and leave its runs" in proc.stderr and not elsewhere.exists()
    assert "gone" in optuna.get_all_study_names(storage)

    out = run_cli(["delete", "--study", "gone", "--storage", storage, *mlflow, "--yes"], tmp_path, cli_env).stdout
    assert "deleted study 'gone'; `MLFLOW_TRACKING_URI=" in out, out
    assert f"mlflow gc --run-ids {','.join(runs)}` frees its runs' artifacts" in out, out  # these alone
    assert "gone" not in optuna.get_all_study_names(storage)
    assert {tracker.client.get_run(r).info.lifecycle_stage for r in runs} == {"deleted"}
    assert not model.exists() and not model.parent.exists()

    # a final model file another study of the name saved over is not this study's: left, and said (the study as a
    # search records its final model, without training one again)
    from search import open_study
    from search.final import file_sha256

    study, _ = open_study("gone", storage, tiny_settings(tmp_path))
    model.parent.mkdir()
    model.write_bytes(b"this study's model")
    study.set_user_attr("final", {"trial": 0, "model_path": str(model), "model_sha256": file_sha256(model)})
    model.write_bytes(b"another study's model")
    result = types.SimpleNamespace(final={"model_path": str(model)})
    study.add_trial(optuna.trial.create_trial(value=0.5))
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.RUNNING))
    proc = run_cli(["delete", "--study", "gone", "--storage", storage, "--no-mlflow", "--yes"], tmp_path, cli_env,
                   check=False)
    assert proc.returncode == 2 and "has trial(s) 1 RUNNING: stop its searches and workers first" in proc.stderr
    running = [t for t in study.get_trials(deepcopy=False) if t.state.name == "RUNNING"][0]
    study._storage.set_trial_state_values(running._trial_id, optuna.trial.TrialState.FAIL)
    out = run_cli(["delete", "--study", "gone", "--storage", storage, "--no-mlflow", "--yes"], tmp_path, cli_env).stdout
    assert f"not deleted: {result.final['model_path']}: it was replaced since its search saved it" in out, out
    assert Path(result.final["model_path"]).read_bytes() == b"another study's model"
    assert "gone" not in optuna.get_all_study_names(storage)


def test_delete_removes_a_keras_tuner_study_s_state_folder(tmp_path, monkeypatch):
    """A KerasTuner search keeps its tuner's state in OUT/keras_tuner/NAME: deleted with its study (a search of a
    new study of that name then refused the folder as another study's)."""
    import search.keras_tuner_engine as kte
    from search.delete import delete_study, plan_deletion

    fake_keras_tuner_training(monkeypatch, [0.7])
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    out = kte.run_keras_tuner("kt-del", tiny_settings(tmp_path), tuner="random", n_trials=1, tracking=None,
                              out_dir=tmp_path, progress=False, storage=storage, final=False)
    folder = tmp_path / "keras_tuner" / "kt-del"
    assert folder.is_dir()
    plan = plan_deletion(out["study"], storage, None)
    assert plan.folders == [folder.resolve()] and plan.files == [] and plan.runs == []
    delete_study(plan, None)
    assert not folder.exists() and "kt-del" not in optuna.get_all_study_names(storage)
    # the state file keeps --storage as typed: given otherwise (an absolute path) it is the same study's folder
    fake_keras_tuner_training(monkeypatch, [0.6])
    monkeypatch.chdir(tmp_path)
    out = kte.run_keras_tuner("kt-del", tiny_settings(tmp_path), tuner="random", n_trials=1, tracking=None,
                              out_dir=tmp_path, progress=False, storage="sqlite:///optuna.db", final=False)
    assert plan_deletion(out["study"], storage, None).folders == [folder.resolve()]
    # a folder whose state holds another study of the name (other settings, the same --out-dir) is not this one's
    state = json.loads((folder / kte.STATE_FILE).read_text())
    (folder / kte.STATE_FILE).write_text(json.dumps({**state, "settings": {**state["settings"], "seed": 99}}))
    plan = plan_deletion(out["study"], storage, None)
    assert plan.folders == [] and plan.kept[0].startswith(f"{folder.resolve()}: its KerasTuner state is not this study's")


def test_a_printed_storage_option_is_quoted_for_the_shell():
    """A storage URL with ?a=b&c=d, pasted unquoted from a printed command, became a background job and a second
    command; the password stays hidden."""
    from search import storage_option

    assert storage_option("sqlite:///runs/optuna.db") == ""  # the default needs none
    assert storage_option("sqlite:////tmp/o.db") == " --storage sqlite:////tmp/o.db"
    assert storage_option("postgresql://u:pw@h/db?sslmode=require&x=y") == \
        " --storage 'postgresql://u:***@h/db?sslmode=require&x=y'"


def test_studies_lists_a_storage_s_studies_a_row_each(tmp_path, cli_env):
    """`optuna studies` printed each study's attributes, the whole space file included, in one table cell: there
    was no readable list of a storage's studies (the names --study takes). `ecg-automl studies` gives one row each."""
    from conftest import run_cli

    from search import open_study

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    one, _ = open_study("single", storage, tiny_settings(tmp_path))
    for value in (0.5, 0.75):
        one.add_trial(optuna.trial.create_trial(value=value, params={}, distributions={}))
    one.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED))
    one.set_user_attr("final", {"trial": 1, "abnormal": {"f1": 0.61234, "roc_auc": 0.9512}})
    moo, _ = open_study("moo", storage, tiny_settings(tmp_path, objectives=["quality", "latency"]))
    for values in ([0.7, 0.9], [0.6, 0.5], [0.5, 0.95]):
        moo.add_trial(optuna.trial.create_trial(values=values))
    optuna.create_study(study_name="half", storage=storage)  # what a search killed while creating it left

    out = run_cli(["studies", "--storage", storage], tmp_path, cli_env).stdout
    lines = out.splitlines()
    assert lines[0] == f"3 studies in {storage}:", out
    assert lines[1].split() == ["study", "engine", "data", "objectives", "trials", "best", "final", "test",
                                "(held-out)", "last", "trial", "ended"], out
    half, moo_line, single = lines[2:]
    assert half.startswith("half") and "none: never fully created (a search was stopped creating it)" in half, out
    assert moo_line.split()[:6] == ["moo", "optuna", "mitdb", "f1,", "latency", "3"], out
    assert "Pareto front of 2" in moo_line, out
    assert "2 complete, 1 pruned" in single and "trial 1: f1 0.7500" in single, out
    assert "trial 1: F1 0.612, ROC-AUC 0.951" in single, out
    rows = json.loads(run_cli(["studies", "--storage", storage, "--json"], tmp_path, cli_env).stdout)
    assert [r["study"] for r in rows] == ["half", "moo", "single"]
    assert rows[1]["pareto_front"] == [0, 1] and rows[2]["best"]["value"] == 0.75 and not rows[0]["fully_created"]
    assert rows[2]["final_test"] == {"trial": 1, "f1": 0.61234, "roc_auc": 0.9512}
    proc = run_cli(["studies", "--storage", f"sqlite:///{tmp_path / 'none.db'}"], tmp_path, cli_env, check=False)
    assert proc.returncode == 2 and "no study storage at" in proc.stderr and not (tmp_path / "none.db").exists()


def test_delete_takes_a_study_search_would_refuse_to_open(tmp_path):
    """A study of an older data pipeline, or one a killed search left half-created, is what a user most wants gone,
    and open_study refuses both: delete reads the study as stored."""
    from search import StudyMismatchError
    from search.delete import delete_study, plan_deletion, study_to_delete

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    old = optuna.create_study(study_name="old", storage=storage)
    old.set_user_attr("settings", {"dataset": "mitdb", "metric": "f1"})  # no pipeline_version: version 5 or older
    old.add_trial(optuna.trial.create_trial(value=0.5))
    optuna.create_study(study_name="half", storage=storage)
    for name in ("old", "half"):
        delete_study(plan_deletion(study_to_delete(name, storage), storage, None), None)
    assert optuna.get_all_study_names(storage) == []
    with pytest.raises(StudyMismatchError, match="no study named 'old' in sqlite:///.*optuna.db \\(known: none\\)"):
        study_to_delete("old", storage)


def test_a_sqlite_storage_with_a_query_string_is_read_as_its_file(tmp_path, monkeypatch):
    """``sqlite:///s.db?timeout=30`` (SQLAlchemy passes the query to SQLite) opened and searched, but the file was
    looked for as ``s.db?timeout=30``: ``studies`` and ``delete`` said "no study storage", a worker's
    make_storage(create=False) said the file does not exist, and the UI warned of an empty MLflow store."""
    from search import make_storage
    from search.delete import study_to_delete
    from search.listing import study_summaries
    from search.storage import StorageError, sqlite_file
    from search.study import stored_study
    from search.tracking import local_store

    monkeypatch.chdir(tmp_path)
    url = "sqlite:///sub/s.db?timeout=30"
    study = optuna.create_study(study_name="q", storage=make_storage(url, heartbeat=None))
    study.add_trial(optuna.trial.create_trial(value=0.5))
    assert (tmp_path / "sub" / "s.db").is_file() and not list(tmp_path.glob("sub/*\\?*"))
    assert sqlite_file(url) == Path("sub/s.db") and local_store(url) == Path("sub/s.db")
    assert sqlite_file("sqlite:///a%20b.db") == Path("a b.db")
    assert sqlite_file("sqlite:///:memory:") is None and sqlite_file("postgresql://h/db") is None
    make_storage(url, heartbeat=None, create=False)
    assert stored_study("q", url) is not None
    assert [s["study"] for s in study_summaries(url)] == ["q"]
    assert study_to_delete("q", url).study_name == "q"
    with pytest.raises(StorageError, match="no study storage at sqlite:///nope.db\\?timeout=30"):
        study_summaries("sqlite:///nope.db?timeout=30")
    from search.tracking import _store_uri

    for name in ("a%41.db", "a?b.db"):  # a tracking store given as a path: the URL made of it names that file
        assert local_store(_store_uri(str(tmp_path / name))) == tmp_path / name
