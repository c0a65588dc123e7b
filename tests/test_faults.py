"""Faults a user meets: the tracking server lost in the middle of a study (nothing lost, a warning,
``ecg-automl sync`` back-fills MLflow), and bad input (a clear one-line message, exit 2, and nothing
half-written: no study database, no MLflow store, no runs/ folder).

Complements test_cli.py (messages of the simple cases), test_data.py (the data layer's errors) and
test_mlflow_server.py (tracking server unreachable at start)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import SMALL_RECORDS, run_cli
from optuna.trial import TrialState
from servers import free_port, start_mlflow_server, trial_runs_by_number
from test_search import TINY, tiny_space_file

from mlflow.tracking import MlflowClient

from search.storage import make_storage
from search.tracking import EPOCH_CURVES


# --------------------------------------------------------------------------------------------
# tracking server lost mid-study
# --------------------------------------------------------------------------------------------
def _wait_for(predicate, timeout: float, what: str, proc=None, log=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            tail = log.read_text()[-3000:] if log is not None and log.exists() else ""
            raise AssertionError(f"the search exited ({proc.returncode}) while waiting for {what}:\n{tail}")
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def test_tracking_server_lost_mid_study_then_sync_back_fills(tmp_path, cli_env):
    backend = f"sqlite:///{tmp_path / 'mlflow-server.db'}"
    port = free_port()
    server = start_mlflow_server(backend, tmp_path / "mlartifacts", tmp_path / "mlflow.log", port=port)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    log = open(tmp_path / "search.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ecg_automl", "search", "--dataset", "mitdb", "--space", str(tiny_space_file(tmp_path)),
         "--trials", "3", "--folds", "2", "--max-beats", "600", "--records", ",".join(SMALL_RECORDS),
         "--study", "lost", "--no-final", "--pruner", "none", "--storage", storage, "--quiet",
         "--tracking-uri", server.url, "--experiment", "lost"],
        cwd=tmp_path, env=cli_env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    try:
        def first_trial_logged():
            if not (tmp_path / "optuna.db").exists():
                return False
            # through make_storage: it waits while the search is still creating the database
            try:
                study = optuna.load_study(study_name="lost", storage=make_storage(storage, heartbeat=None))
            except KeyError:
                return False
            done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if not done:
                return False
            _, runs = trial_runs_by_number(server.url, "lost")
            return done[0].number in runs and runs[done[0].number][0].info.status == "FINISHED"

        _wait_for(first_trial_logged, 300, "the first trial in MLflow", proc, tmp_path / "search.log")
        server.stop()  # the tracking server goes away with trials 1 and 2 still to run
        t_lost = time.time()
        proc.wait(timeout=400)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        server.stop()
    out = (tmp_path / "search.log").read_text()
    assert proc.returncode == 0, out[-3000:]
    assert "Traceback" not in out
    # the run says what happened and what to do
    assert "MLflow" in out and "failed" in out and "ecg-automl sync --study lost" in out, out[-3000:]
    # no result is lost: Optuna holds every trial with its value and metrics
    study = optuna.load_study(study_name="lost", storage=storage)
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert all(t.value is not None and t.user_attrs["fold_metrics"] for t in trials)

    # the server comes back on the same backend and port; before sync it lacks the lost trials
    server = start_mlflow_server(backend, tmp_path / "mlartifacts", tmp_path / "mlflow.log", port=port)
    try:
        _, before = trial_runs_by_number(server.url, "lost")
        finished_before = sum(r[0].info.status == "FINISHED" for r in before.values())
        assert finished_before < 3
        sync = run_cli(["sync", "--study", "lost", "--storage", storage, "--tracking-uri", server.url,
                        "--experiment", "lost"], tmp_path, cli_env, timeout=300)
        assert "MLflow back-fill for study lost:" in sync.stdout
        client = MlflowClient(server.url)
        studies, runs = trial_runs_by_number(server.url, "lost")
        assert len(studies) == 1
        assert sorted(runs) == [0, 1, 2] and all(len(r) == 1 for r in runs.values())
        for t in trials:
            run = runs[t.number][0]
            assert run.info.status == "FINISHED" and run.data.tags["optuna.state"] == "COMPLETE"
            assert run.data.metrics["objective.quality"] == pytest.approx(t.value)
            assert float(run.data.params["learning_rate"]) == pytest.approx(t.params["learning_rate"])
            assert run.data.tags["mlflow.parentRunId"] == studies[0].info.run_id
            # the per-epoch curves too (the study keeps them): every one, every epoch, once
            curves = t.user_attrs[EPOCH_CURVES]
            assert {"fold0.loss", "fold1.val_loss", "fold1.val_auc"} <= set(curves), sorted(curves)
            for key, values in curves.items():
                history = client.get_metric_history(run.info.run_id, key)
                logged = sorted(history, key=lambda m: m.step)
                assert [m.step for m in logged] == [step for step, v in enumerate(values) if v is not None], (t.number, key)
                assert [m.value for m in logged] == pytest.approx([v for v in values if v is not None]), (t.number, key)
        again = run_cli(["sync", "--study", "lost", "--storage", storage, "--tracking-uri", server.url,
                         "--experiment", "lost"], tmp_path, cli_env, timeout=300)
        assert "0 runs created, 0 updated" in again.stdout  # idempotent
    finally:
        server.stop()
    print(f"\nMLflow lost mid-study: {finished_before} of 3 runs FINISHED before sync, 3 after; "
          f"search ran {time.time() - t_lost:.0f} s after the server went away; "
          f"sync said: {sync.stdout.strip().splitlines()[-1]}")


# --------------------------------------------------------------------------------------------
# bad input: one clear line, exit 2, nothing half-written
# --------------------------------------------------------------------------------------------
def _copy_mitdb(data_root, root, records=("100", "101")):
    db = root / "mitdb"
    db.mkdir(parents=True)
    for r in records:
        for ext in ("hea", "dat", "atr"):
            shutil.copy(data_root / "mitdb" / f"{r}.{ext}", db / f"{r}.{ext}")
    (db / "RECORDS").write_text("\n".join(records) + "\n")
    return db


def _double_sample_count(db):
    hea = db / "101.hea"
    lines = hea.read_text().splitlines()
    first = lines[0].split()
    first[3] = str(int(first[3]) * 2)  # record line: name, signals, fs, samples
    hea.write_text("\n".join([" ".join(first), *lines[1:]]) + "\n")


CORRUPTIONS = {
    "truncated .dat": (lambda db: (db / "101.dat").write_bytes((db / "101.dat").read_bytes()[:40_000]),
                       ["101.dat: truncated: 40000 bytes, but the header (101.hea) declares 650000 samples"]),
    "header longer than signal": (_double_sample_count, ["101.dat: truncated", "declares 1300000 samples"]),
    "missing .dat": (lambda db: (db / "101.dat").unlink(), ["101 has no 101.dat", "data fetch mitdb"]),
    "missing .atr": (lambda db: (db / "100.atr").unlink(), ["100 has no 100.atr", "data fetch mitdb"]),
    "garbage header": (lambda db: (db / "101.hea").write_text("101 two 360 x\n"), ["101.hea: unreadable header"]),
    # said "unreadable header (IndexError: list index out of range)" and "no beat annotations"
    "empty header": (lambda db: (db / "101.hea").write_bytes(b""), ["101.hea: empty header file (0 bytes)"]),
    "empty .atr": (lambda db: (db / "100.atr").write_bytes(b""), ["100.atr: empty annotation file (0 bytes)"]),
    # read without an error as the beats before the cut: a study trained on fewer beats, and `data fetch` said the
    # copy was complete
    "cut-short .atr": (lambda db: (db / "100.atr").write_bytes((db / "100.atr").read_bytes()[:3000]),
                       ["100.atr: cut short or garbled: it does not end with the two zero bytes"]),
}


def _assert_rejected(proc, messages, tmp_path, *, written=()):
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    for m in messages:
        assert m in proc.stderr, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1
    print(f"\n{' '.join(map(str, proc.args[3:]))}\n  -> {errors[0]}")
    # nothing half-written: no study database, no MLflow store, not even an empty runs/ folder
    assert not (tmp_path / "runs").exists(), sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert sorted(p.name for p in tmp_path.glob("*.db")) == sorted(written)


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_corrupt_wfdb_records_are_rejected_before_anything_is_written(tmp_path, cli_env, data_root, case):
    corrupt, messages = CORRUPTIONS[case]
    root = tmp_path / "data"
    corrupt(_copy_mitdb(data_root, root))
    env = dict(cli_env, ECG_AUTOML_DATA=str(root))
    # the defaults: sqlite:///runs/optuna.db and the local MLflow store sqlite:///runs/mlflow.db
    proc = run_cli(["search", "--study", "x", "--space", tiny_space_file(tmp_path), "--records", "101,100",
                    "--trials", 1, "--folds", 2], tmp_path, env, check=False, timeout=300)
    _assert_rejected(proc, messages, tmp_path)


@pytest.mark.parametrize("args, messages", [
    (["--dataset", "nosuchdb"], ["unknown dataset 'nosuchdb'"]),
    (["--records", "100,999"], ["records ['999'] are not in DS1/DS2"]),
    (["--storage", "foo://nowhere/db"], ["cannot open study storage foo://nowhere/db"]),
    (["--storage", "sqlite:////proc/no-such-dir/o.db"], ["cannot open study storage sqlite:////proc/no-such-dir/o.db"]),
    # a relative path below a file: FileExistsError traceback from mkdir, after the data had been loaded
    (["--storage", "sqlite:///tiny.yaml/o.db"], ["cannot open study storage sqlite:///tiny.yaml/o.db: cannot create "
                                                  "the folder", "tiny.yaml is a file, not a folder"]),
], ids=["unknown-dataset", "unknown-record", "unknown-db-scheme", "unwritable-sqlite-path", "relative-path-below-a-file"])
def test_bad_dataset_or_storage_leaves_no_study(tmp_path, cli_env, args, messages):
    """Rejected before the study is created (a bad storage URL even before the data is read): rerunning
    the corrected command must not meet a half-made study "with other settings"."""
    base = ["search", "--study", "x", "--space", tiny_space_file(tmp_path), "--records", ",".join(SMALL_RECORDS),
            "--trials", 1, "--folds", 2]
    proc = run_cli(base + args, tmp_path, cli_env, check=False, timeout=300)
    _assert_rejected(proc, messages, tmp_path)


def test_missing_data_root_leaves_no_study(tmp_path, cli_env):
    env = dict(cli_env, ECG_AUTOML_DATA=str(tmp_path / "no-data-here"))
    proc = run_cli(["search", "--study", "x", "--space", tiny_space_file(tmp_path), "--storage",
                    f"sqlite:///{tmp_path / 'o.db'}"], tmp_path, env, check=False, timeout=300)
    # (the data layer may make no-data-here/mitdb/ while trying to download: the folder it says to fill)
    _assert_rejected(proc, ["no-data-here"], tmp_path)


def _space(tmp_path, **changes):
    params = {**TINY, **changes}
    p = tmp_path / "space.yaml"
    p.write_text(yaml.safe_dump({"name": "s", "data": {"fs": 180, "window": 192}, "params": params}))
    return p


@pytest.mark.parametrize("changes, message", [
    ({"lstm_units": {"type": "int", "low": "eight", "high": 16}}, "params.lstm_units.low: 'eight' is a str, expected int"),
    ({"epochs": 2.5}, "params.epochs: 2.5 is a float, expected int"),
    ({"rr_features": "yes"}, "params.rr_features: 'yes' is a str, expected bool"),
    ({"kernel_size": 99}, "params.kernel_size: 99 is out of range, expected an integer in [1, 63]"),
    ({"learning_rate": {"type": "float", "low": 0.1, "high": 0.01}}, "params.learning_rate: low (0.1) is greater than high (0.01)"),
    ({"lstm_unitz": 8}, "params.lstm_unitz: unknown hyperparameter"),
    ({"pool": {"type": "categorical", "choices": ["max"], "weights": [1]}}, "params.pool.weights: unknown key"),
], ids=["wrong-type", "float-for-int", "str-for-bool", "out-of-range", "low-above-high", "unknown-key",
        "unknown-dist-key"])
def test_bad_space_file_is_rejected_before_anything_is_written(tmp_path, cli_env, changes, message):
    proc = run_cli(["search", "--study", "x", "--space", _space(tmp_path, **changes), "--trials", 1],
                   tmp_path, cli_env, check=False, timeout=300)
    _assert_rejected(proc, [f"space.yaml: {message}"], tmp_path)


def test_worker_and_sync_with_a_mistyped_sqlite_path_create_nothing(tmp_path, cli_env):
    typo = f"sqlite:///{tmp_path / 'optuan.db'}"
    for cmd in (["worker", "--study", "x", "--storage", typo, "--trials", 1, "--no-mlflow"],
                ["sync", "--study", "x", "--storage", typo]):
        proc = run_cli(cmd, tmp_path, cli_env, check=False, timeout=300)
        _assert_rejected(proc, ["optuan.db does not exist", "create the study first"], tmp_path)


def test_worker_with_an_unknown_study_creates_no_study(tmp_path, cli_env):
    storage = f"sqlite:///{tmp_path / 'o.db'}"
    optuna.create_study(study_name="real", storage=storage)
    proc = run_cli(["worker", "--study", "typo", "--storage", storage, "--trials", 1], tmp_path, cli_env,
                   check=False, timeout=300)
    _assert_rejected(proc, ["no study named 'typo' in the storage (known: real)"], tmp_path, written=["o.db"])
    assert [s.study_name for s in optuna.get_all_study_summaries(storage)] == ["real"]


def test_a_damaged_or_missing_tflite_is_a_clear_error(tmp_path, cli_env, data_root):
    """Beyond test_export's "not a flatbuffer at all": a file that starts like a model (TFL3 identifier)
    but is damaged, e.g. cut short in a copy, and a model path that does not exist."""
    import json

    sidecar = {"fs": 180, "window": 256, "input_length": 192, "rr_features": True, "threshold": 0.5, "lead": "MLII"}
    damaged = tmp_path / "damaged.tflite"
    damaged.write_bytes(b"\0\0\0\0TFL3" + bytes(range(256)) * 4)
    damaged.with_suffix(".json").write_text(json.dumps(sidecar))
    record = data_root / "mitdb" / "100"
    for model, message in ((damaged, "damaged.tflite: not a valid TFLite model"),
                           (tmp_path / "nosuch.tflite", "nosuch.tflite: no such model file")):
        proc = run_cli(["predict", model, "--record", record], tmp_path, cli_env, check=False, timeout=300)
        _assert_rejected(proc, [message], tmp_path)


def test_sync_completes_a_run_created_just_before_the_server_went_away(tmp_path):
    """The race the end-to-end test above can hit: a trial's run was created, then the server went
    away before its params and fold metrics were logged. ``sync`` must fill in what the run lacks."""
    from search import Tracker, TrackingConfig
    from search.tracking import trial_tags

    tracker = Tracker(TrackingConfig(f"sqlite:///{tmp_path / 'mlflow.db'}", (tmp_path / "art").as_uri(), "race"))
    study = optuna.create_study(study_name="race", storage=f"sqlite:///{tmp_path / 'optuna.db'}",
                                direction="maximize")
    config = {"learning_rate": 0.003, "batch_size": 64, "filters": [16, 32]}
    folds = [{"f1": 0.5, "auc": 0.8}, {"f1": 0.6, "auc": 0.9}]
    study.add_trial(optuna.trial.create_trial(
        params={"learning_rate": 0.003, "batch_size": 64},
        distributions={"learning_rate": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True),
                       "batch_size": optuna.distributions.CategoricalDistribution([32, 64])},
        value=0.55, user_attrs={"config": config, "fold_metrics": folds, "objective_names": ["quality"],
                                "mean_metrics": {"mean.f1": 0.55, "oof_tuned.f1": 0.57},
                                EPOCH_CURVES: {"fold0.loss": [0.9, 0.7, 0.6], "fold0.val_loss": [0.8, None, 0.75],
                                               "fold0.val_auc": [None, None, None]}}))  # NaN every epoch
    parent = tracker.study_run(study, {})
    trial = study.get_trials()[0]
    # what the lost server left behind: the run exists, RUNNING, with tags and the first curve's epochs only
    run = tracker.client.create_run(tracker.experiment_id, run_name="trial-0",
                                    tags={"mlflow.parentRunId": parent, "optuna.trial_number": "0",
                                          **trial_tags(trial)})
    for step, v in enumerate([0.9, 0.7, 0.6]):
        tracker.log_metrics(run.info.run_id, {"fold0.loss": v}, step=step)
    assert tracker.client.get_run(run.info.run_id).data.params == {}

    assert tracker.sync(study) == {"created": 0, "updated": 1}
    done = tracker.client.get_run(run.info.run_id)
    assert done.info.status == "FINISHED"
    assert float(done.data.params["learning_rate"]) == pytest.approx(0.003)
    assert yaml.safe_load(done.data.params["filters"]) == [16, 32]
    history = tracker.client.get_metric_history(run.info.run_id, "fold.f1")
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == [0.5, 0.6]
    assert done.data.metrics["objective.quality"] == pytest.approx(0.55)
    # the summary the UI's columns show (back-filled runs lacked every mean.* and oof_tuned.* metric)
    assert done.data.metrics["mean.f1"] == pytest.approx(0.55) and done.data.metrics["oof_tuned.f1"] == pytest.approx(0.57)
    # the curve the run lacked, at its epochs (the NaN epoch left out); the one it had, not logged twice
    curve = sorted(tracker.client.get_metric_history(run.info.run_id, "fold0.val_loss"), key=lambda m: m.step)
    assert [(m.step, m.value) for m in curve] == [(0, 0.8), (2, 0.75)]
    assert len(tracker.client.get_metric_history(run.info.run_id, "fold0.loss")) == 3
    # a second sync finds nothing left to do (and does not try to change a logged param)
    assert tracker.sync(study) == {"created": 0, "updated": 0}
    # a trial whose run the outage never created gets its summary too
    study.add_trial(optuna.trial.create_trial(
        params={"learning_rate": 0.002, "batch_size": 32}, distributions=trial.distributions, value=0.5,
        user_attrs={"config": config, "fold_metrics": folds, "mean_metrics": {"mean.f1": 0.5, "oof_tuned.f1": 0.52}}))
    assert tracker.sync(study) == {"created": 1, "updated": 0}
    new = tracker.trial_runs(parent)[1]
    assert new.data.metrics["mean.f1"] == pytest.approx(0.5) and new.data.metrics["oof_tuned.f1"] == pytest.approx(0.52)


def test_sync_fills_the_gaps_inside_the_curves_of_a_trial_that_lost_some(tmp_path):
    """A store unreachable for a few epochs of a trial leaves gaps inside its curves; `sync` only looked for
    curves a run lacked altogether. A trial that knows it lost points (CURVES_LOST) gets the missing steps, and
    only those; a trial that does not say so is not asked about (a request per curve)."""
    from search import Tracker, TrackingConfig
    from search.tracking import CURVES_LOST

    tracker = Tracker(TrackingConfig(f"sqlite:///{tmp_path / 'mlflow.db'}", (tmp_path / "art").as_uri(), "gaps"))
    study = optuna.create_study(study_name="gaps", storage=f"sqlite:///{tmp_path / 'optuna.db'}",
                                direction="maximize")
    curves = {"fold0.loss": [0.9, 0.7, 0.6, 0.5], "fold0.val_auc": [0.6, None, 0.8, 0.85]}
    parent = tracker.study_run(study, {})
    for number, lost in ((0, True), (1, False)):
        study.add_trial(optuna.trial.create_trial(
            params={}, distributions={}, value=0.5,
            user_attrs={"config": {}, "objective_names": ["quality"], EPOCH_CURVES: curves, CURVES_LOST: lost}))
        run_id = tracker.start_trial(parent, number, "gaps", {}, {})
        for key, values in curves.items():  # the live log, but steps 1 and 2 of fold0.loss (the outage)
            for step, v in enumerate(values):
                if v is not None and not (key == "fold0.loss" and step in (1, 2)):
                    tracker.log_metrics(run_id, {key: v}, step=step)
        tracker.end_trial(study.get_trials()[number], run_id)

    def steps(number: int, key: str) -> list[tuple[int, float]]:
        run_id = tracker.trial_runs(parent)[number].info.run_id
        return sorted((m.step, m.value) for m in tracker.client.get_metric_history(run_id, key))

    assert tracker.sync(study) == {"created": 0, "updated": 1}
    assert steps(0, "fold0.loss") == [(0, 0.9), (1, 0.7), (2, 0.6), (3, 0.5)]  # filled, nothing twice
    assert steps(0, "fold0.val_auc") == [(0, 0.6), (2, 0.8), (3, 0.85)]  # the NaN epoch stays out
    assert steps(1, "fold0.loss") == [(0, 0.9), (3, 0.5)]  # not flagged: left as it is
    asked = []
    real = tracker.client.get_metric_history
    tracker.client.get_metric_history = lambda *a: asked.append(a) or real(*a)
    assert tracker.sync(study) == {"created": 0, "updated": 0}  # a second sync finds nothing left
    assert asked == []  # and does not ask for the histories again (the run says they were completed)


def test_sync_fills_the_folds_a_trial_lost_and_only_for_a_trial_that_says_so(tmp_path):
    """A store unreachable while fold 1's metrics were logged left a run holding fold 0 only; `sync` looked only
    for a run with no fold.* at all, so it said nothing was left to do, for good. A trial that knows it lost some
    (FOLDS_LOST) gets the missing folds, and only those."""
    from search import Tracker, TrackingConfig
    from search.tracking import FOLDS_LOST

    tracker = Tracker(TrackingConfig(f"sqlite:///{tmp_path / 'mlflow.db'}", (tmp_path / "art").as_uri(), "folds"))
    study = optuna.create_study(study_name="folds", storage=f"sqlite:///{tmp_path / 'optuna.db'}",
                                direction="maximize")
    folds = [{"f1": 0.5, "roc_auc": 0.8}, {"f1": 0.6, "roc_auc": 0.9}, {"f1": 0.7, "roc_auc": 0.95}]
    parent = tracker.study_run(study, {})
    for number, lost in ((0, True), (1, False)):
        study.add_trial(optuna.trial.create_trial(
            params={}, distributions={}, value=0.6,
            user_attrs={"config": {}, "objective_names": ["quality"], "fold_metrics": folds, FOLDS_LOST: lost}))
        run_id = tracker.start_trial(parent, number, "folds", {}, {})
        tracker.log_metrics(run_id, {"fold.f1": 0.5, "fold.roc_auc": 0.8}, step=0)  # folds 1 and 2: the outage,
        tracker.log_metrics(run_id, {"fold.roc_auc": 0.95}, step=2)  # but one of fold 2's metrics got through
        tracker.end_trial(study.get_trials()[number], run_id)

    def steps(number: int, key: str) -> list[tuple[int, float]]:
        run_id = tracker.trial_runs(parent)[number].info.run_id
        return sorted((m.step, m.value) for m in tracker.client.get_metric_history(run_id, key))

    assert tracker.sync(study) == {"created": 0, "updated": 1}
    assert steps(0, "fold.f1") == [(0, 0.5), (1, 0.6), (2, 0.7)]
    assert steps(0, "fold.roc_auc") == [(0, 0.8), (1, 0.9), (2, 0.95)]  # nothing twice
    assert steps(1, "fold.f1") == [(0, 0.5)]  # not flagged: not asked about (a request per metric)
    asked = []
    real = tracker.client.get_metric_history
    tracker.client.get_metric_history = lambda *a: asked.append(a) or real(*a)
    assert tracker.sync(study) == {"created": 0, "updated": 0} and asked == []  # the run says it was completed


def _open_storage(url: str) -> str:
    try:
        make_storage(url, heartbeat=None)
        return "ok"
    except Exception as exc:  # reported, not raised: the parent asserts on all of them
        return repr(exc)[:300]


def test_workers_started_together_on_a_fresh_database_all_open_it(tmp_path):
    """Four workers opening one new SQLite storage at the same moment race to create its schema ("table
    already exists", a duplicate alembic_version row: 9 in 10 rounds failed before the retry); each must
    open it. Seen first as a flaky CI failure of the lost-server test (its poller raced the search)."""
    _four_processes_open_new_stores(_open_storage, tmp_path, "fresh")


def _four_processes_open_new_stores(open_store, tmp_path: Path, name: str) -> None:
    """Three rounds of four forked processes opening one new SQLite file at the same moment with ``open_store``
    (url -> "ok" or the error's repr); each must open it."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    for rnd in range(3):
        url = f"sqlite:///{tmp_path / f'{name}-{rnd}.db'}"
        with ctx.Pool(4) as pool:
            results = pool.map(open_store, [url] * 4)
        assert results == ["ok"] * 4, results


@pytest.mark.parametrize("where", ["store", "experiment"])
def test_sync_into_a_store_without_the_study_run_is_refused(tmp_path, cli_env, where):
    """``sync`` (and a worker) with another --tracking-uri or --experiment than the study's created trial
    runs whose parent run was not there: orphans the UI shows under no study."""
    from test_search import tiny_settings

    from search import Tracker, TrackingConfig, open_study

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study, _ = open_study("s", storage, tiny_settings(tmp_path))
    Tracker(TrackingConfig(f"sqlite:///{tmp_path / 'mlflow.db'}", None, "home")).study_run(study, {})
    wrong = (["--tracking-uri", f"sqlite:///{tmp_path / 'elsewhere.db'}", "--experiment", "home"] if where == "store"
             else ["--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--experiment", "other"])
    for cmd in (["sync"], ["worker", "--trials", "1"]):
        proc = run_cli([*cmd, "--study", "s", "--storage", storage, *wrong], tmp_path, cli_env, check=False,
                       timeout=300)
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert ("which is not in the tracking store" if where == "store" else "pass --experiment 'home'") in proc.stderr
        # and the refused sync or worker left no new store or experiment behind
        assert not (tmp_path / "elsewhere.db").exists(), cmd
        tracker = Tracker(TrackingConfig(f"sqlite:///{tmp_path / 'mlflow.db'}", None, "home"))
        assert tracker.client.get_experiment_by_name("other") is None, cmd
    right = ["--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--experiment", "home"]
    assert "0 runs created" in run_cli(["sync", "--study", "s", "--storage", storage, *right], tmp_path, cli_env).stdout


def test_a_study_whose_mlflow_run_was_deleted_is_refused_with_how_to_restore_it(tmp_path, cli_env):
    """After the study's run was deleted in the MLflow UI, a resume said the run "is not in" the store and started
    a second study run beside it, and `sync` back-filled trial runs under the deleted one: orphans the UI shows
    under no study, and two active runs of each trial. Both are refused now, saying how to restore the run."""
    from test_search import tiny_settings

    from search import Tracker, TrackingConfig, open_study

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study, _ = open_study("s", storage, tiny_settings(tmp_path))
    tracker = Tracker(TrackingConfig(f"sqlite:///{tmp_path / 'mlflow.db'}", None, "home"))
    run_id = tracker.study_run(study, {})
    tracker.client.delete_run(run_id)
    mlflow = ["--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--experiment", "home"]
    for cmd in (["sync"], ["worker", "--trials", "1"]):
        proc = run_cli([*cmd, "--study", "s", "--storage", storage, *mlflow], tmp_path, cli_env, check=False,
                       timeout=300)
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert (f"study 's' logs to MLflow run {run_id}, which was deleted (the UI's Delete, or `mlflow runs "
                f"delete`): restore it to log there again (MLFLOW_TRACKING_URI=sqlite:///{tmp_path}/mlflow.db mlflow "
                f"runs restore --run-id {run_id})") in proc.stderr, proc.stderr[-2000:]
    from search import TrackingError, run_search  # a resume, whose check lets a run missing from the store pass
    with pytest.raises(TrackingError, match=f"logs to MLflow run {run_id}, which was deleted"):
        run_search("s", tiny_settings(tmp_path), n_trials=1, storage=storage, progress=False,
                   tracking=TrackingConfig(f"sqlite:///{tmp_path / 'mlflow.db'}", None, "home"))
    assert len(tracker.client.search_runs([tracker.experiment_id], run_view_type=3)) == 1  # nothing made
    tracker.client.restore_run(run_id)
    assert "0 runs created" in run_cli(["sync", "--study", "s", "--storage", storage, *mlflow], tmp_path,
                                       cli_env).stdout


@pytest.mark.parametrize("text, message", [
    ("tracking_uri:\n", "tracking_uri needs a value, not None (remove the line for the default"),
    ("experiment_name: ''\n", "experiment_name needs a value, not ''"),
    ("42\n", "must be a mapping of artifact_location, experiment_name, tracking_uri to values, not 42"),
    ("- tracking_uri\n", "must be a mapping of"),
    # blamed an unreachable store ("AttributeError: 'int' object has no attribute 'decode'")
    ("artifact_location: 5\n", "artifact_location must be a folder or URI, not 5"),
    ("experiment_name: a\nexperiment_name: b\n", "'experiment_name' is given twice in one mapping (lines 1 and 2)"),
    ("experiment_name: a\n\tartifact_location: b\n", "not valid YAML: line 2, column 1: found character '\\t'"),
])
def test_an_mlflow_yaml_without_a_usable_value_is_named(tmp_path, monkeypatch, text, message):
    """`tracking_uri:` with no value became a file store in a folder named 'None' beside the user; a file that
    is not a mapping was a TypeError traceback (42) or a misleading 'unknown keys' (a list)."""
    from search import TrackingConfig, TrackingError

    monkeypatch.chdir(tmp_path)
    (tmp_path / "mlflow.yaml").write_text(text)
    with pytest.raises(TrackingError, match="^mlflow.yaml: ") as err:
        TrackingConfig.load()
    assert message in str(err.value)
    (tmp_path / "mlflow.yaml").write_text("experiment_name: 2026\nartifact_location:\n")
    cfg = TrackingConfig.load()  # a number is its text; no artifact location is MLflow's default
    assert cfg.experiment_name == "2026" and cfg.artifact_location is None


def test_an_mlflow_yaml_that_is_no_text_file_is_named(tmp_path, monkeypatch):
    """A folder or a Latin-1 file given as --mlflow-config was an IsADirectoryError or UnicodeDecodeError traceback."""
    from search import TrackingConfig, TrackingError

    monkeypatch.chdir(tmp_path)
    (tmp_path / "conf").mkdir()
    with pytest.raises(TrackingError, match="^conf: cannot read the MLflow config file"):
        TrackingConfig.load("conf")
    (tmp_path / "latin1.yaml").write_bytes("experiment_name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(TrackingError, match=r"^latin1.yaml: not a text \(UTF-8\) file, byte 20"):
        TrackingConfig.load("latin1.yaml")


@pytest.mark.parametrize("uri, message", [
    ("sqlite://runs/mlflow.db", "a SQLite store is sqlite:///relative/path.db or sqlite:////absolute/path.db"),
    ("sqlite://", "a SQLite store is sqlite:///relative/path.db"),  # in memory
    ("sqlite:///", "names no database file: SQLite would keep the runs in memory"),  # sqlite:///$DB with DB unset
    ("sqlite:///:memory:", "names no database file"),  # made a file named :memory: here
    ("sqlite:///~/m.db", "SQLite does not expand ~"),  # made a folder named ~ here
    ("mlruns-folder", "is a folder store, which MLflow"),  # MLflow's traceback: "in maintenance mode"
    ("file:///tmp/no-such-mlruns", "or set MLFLOW_ALLOW_FILE_STORE=true to keep the folder"),
])
def test_a_tracking_uri_that_would_lose_or_misplace_the_runs_is_refused(tmp_path, monkeypatch, uri, message):
    """Each was accepted, and lost the runs at exit, wrote them somewhere unexpected, failed with MLflow's traceback
    or retried for minutes; now each is one error before anything is written."""
    from search import TrackingConfig, TrackingError

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    with pytest.raises(TrackingError, match="^tracking URI ") as err:
        TrackingConfig.load(tracking_uri=uri)
    assert message in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_a_tracking_uri_given_as_a_path_and_the_study_storage_as_tracking_store(tmp_path, monkeypatch, cli_env):
    """`--tracking-uri runs/mlflow.db` (a SQLite file as a plain path) was opened as a folder store; the study's
    own Optuna file as the tracking store got MLflow's tables written into it; an unreachable PostgreSQL server
    was retried for almost two minutes and then reported as "the study's run is not in the tracking store"."""
    import sqlite3

    from search import TrackingConfig, TrackingError
    from search.tracking import Tracker

    monkeypatch.chdir(tmp_path)
    assert TrackingConfig.load(tracking_uri="runs/m.db").tracking_uri == f"sqlite:///{tmp_path / 'runs' / 'm.db'}"
    (tmp_path / "store").write_bytes(b"")  # an existing file without a .db suffix is a SQLite file too
    assert TrackingConfig.load(tracking_uri="store").tracking_uri == f"sqlite:///{tmp_path / 'store'}"
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # the user's own choice: a folder store
    assert TrackingConfig.load(tracking_uri="mlr").tracking_uri == (tmp_path / "mlr").as_uri()
    optuna_db = tmp_path / "o.db"
    make_storage(f"sqlite:///{optuna_db}")
    before = optuna_db.read_bytes()
    with pytest.raises(TrackingError, match="is an Optuna study storage .*, not an MLflow store"):
        TrackingConfig.load(tracking_uri=f"sqlite:///{optuna_db}")
    assert optuna_db.read_bytes() == before
    con = sqlite3.connect(optuna_db)
    assert "experiments" not in {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
    con.close()
    start = time.monotonic()
    with pytest.raises(TrackingError, match=r"^cannot reach the MLflow tracking store at postgresql://u:\*\*\*@127.0.0.1:9/db"):
        Tracker(TrackingConfig.load(tracking_uri="postgresql://u:pw@127.0.0.1:9/db")).ping()
    assert time.monotonic() - start < 30


def test_resuming_a_search_under_another_experiment_is_refused(tmp_path):
    """A resumed search with another --experiment back-filled every trial's run into that experiment, under a
    study run that stays in the first one (cross-experiment parents), and logged its new trials there: one
    study split over two experiments. `sync` and `worker` refused this already; now the resumed search does."""
    from test_search import tiny_settings

    from search import Tracker, TrackingConfig, TrackingError, open_study, run_keras_tuner, run_search

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study, _ = open_study("s", storage, tiny_settings(tmp_path))
    home = TrackingConfig(f"sqlite:///{tmp_path / 'mlflow.db'}", (tmp_path / "art").as_uri(), "home")
    Tracker(home).study_run(study, {})
    other = TrackingConfig(home.tracking_uri, (tmp_path / "art").as_uri(), "other")
    with pytest.raises(TrackingError, match="study 's' logs to MLflow experiment 'home', not 'other'"):
        run_search("s", tiny_settings(tmp_path), n_trials=1, storage=storage, tracking=other, progress=False,
                   out_dir=tmp_path / "runs")  # all in tmp_path should it run (as it did before)
    assert optuna.load_study(study_name="s", storage=storage).trials == []
    # refused before the experiment is made: the mistyped one was left behind, empty
    assert Tracker(other).client.get_experiment_by_name("other") is None
    with pytest.raises(TrackingError, match="study 's' logs to MLflow experiment 'home', not 'other'"):
        run_keras_tuner("s", tiny_settings(tmp_path), tuner="random", n_trials=1, storage=storage, tracking=other,
                        progress=False, out_dir=tmp_path / "runs")
    assert Tracker(other).client.get_experiment_by_name("other") is None


def _study_done_during_an_outage(tmp_path, name: str, storage: str, *, final: bool = True):
    """A study of two complete trials (and a final test) as a search leaves it in Optuna: no training, the
    trials and report are made up."""
    import numpy as np
    from test_search import tiny_settings

    from search import open_study
    from search.metrics import binary_metrics, full_report

    study, _ = open_study(name, storage, tiny_settings(tmp_path))
    dist = {"learning_rate": optuna.distributions.FloatDistribution(1e-3, 1e-2, log=True)}
    for i, value in enumerate((0.5, 0.6)):
        study.add_trial(optuna.trial.create_trial(
            params={"learning_rate": 0.002 + i / 1000}, distributions=dist, value=value,
            user_attrs={"config": {"learning_rate": 0.002 + i / 1000}, "threshold": 0.4,
                        "fold_metrics": [{"f1": value}], "objective_names": ["quality"]}))
    if final:
        y, prob = np.array([0, 0, 1, 1, 0, 1]), np.array([0.1, 0.6, 0.7, 0.3, 0.2, 0.9])
        report = {**full_report(y, prob, 0.4), "at_0.5": binary_metrics(y, prob, 0.5), "trial": 1,
                  "model_path": str(tmp_path / "runs" / name / "final-trial1.keras")}
        study.set_user_attr("final", report)
    return study


def test_sync_back_fills_the_final_test_and_ends_the_study_run(tmp_path, cli_env):
    """The tracking store went away after trial 0 and came back after the search: `sync` created trial 1's run
    but left the study run RUNNING for good, without the final test; a study searched with --no-mlflow got a
    study run that stayed RUNNING too. A trial still running keeps the study run RUNNING."""
    from search import Tracker, TrackingConfig

    storage, uri = f"sqlite:///{tmp_path / 'optuna.db'}", f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(TrackingConfig(uri, (tmp_path / "art").as_uri(), "out"))
    study = _study_done_during_an_outage(tmp_path, "out", storage)
    parent = tracker.study_run(study, {})
    trial0 = study.trials[0]
    run0 = tracker.start_trial(parent, 0, "out", trial0.user_attrs["config"])
    tracker._log_folds(run0, trial0)
    tracker.end_trial(trial0, run0)  # then the store went away
    _study_done_during_an_outage(tmp_path, "offline", storage)  # searched with --no-mlflow
    running = _study_done_during_an_outage(tmp_path, "busy", storage, final=False)
    tracker.study_run(running, {})
    running.ask()  # a worker is running its trial

    sync = ["--storage", storage, "--tracking-uri", uri, "--experiment", "out"]
    out = run_cli(["sync", "--study", "out", *sync], tmp_path, cli_env)
    assert "1 runs created, 1 updated; study run: final test back-filled (test.* metrics, final_test.json, " \
           "final_test.txt, final_confusion_matrix.png), plots back-filled (optimization_history.png), ended " \
           "FINISHED" in out.stdout, out.stdout
    assert "warning: not back-filled on the study run: model/final_model.keras" in out.stderr, out.stderr
    assert "final_roc.png (it needs the final model's test predictions" in out.stderr
    run = tracker.client.get_run(parent)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["test.f1"] == pytest.approx(study.user_attrs["final"]["abnormal"]["f1"])
    assert "test_at_0.5.f1" in run.data.metrics and "test.normal.precision" in run.data.metrics
    assert {"final_test.json", "final_test.txt", "final_confusion_matrix.png", "optimization_history.png"} <= \
        {a.path for a in tracker.client.list_artifacts(parent)}
    again = run_cli(["sync", "--study", "out", *sync], tmp_path, cli_env)
    assert "0 runs created, 0 updated\n" in again.stdout
    assert "final_roc.png" not in again.stderr  # said once, with the back-fill: not by every sync after it

    out = run_cli(["sync", "--study", "offline", *sync], tmp_path, cli_env)
    assert "3 runs created, 0 updated" in out.stdout and "ended FINISHED" in out.stdout, out.stdout
    offline = optuna.load_study(study_name="offline", storage=storage).user_attrs["mlflow_parent_run_id"]
    assert tracker.client.get_run(offline).info.status == "FINISHED"
    assert "0 runs created, 0 updated\n" in run_cli(["sync", "--study", "offline", *sync], tmp_path, cli_env).stdout

    out = run_cli(["sync", "--study", "busy", *sync], tmp_path, cli_env)
    assert "2 runs created" in out.stdout and "ended" not in out.stdout, out.stdout
    assert tracker.client.get_run(running.user_attrs["mlflow_parent_run_id"]).info.status == "RUNNING"


def test_sync_replaces_a_final_test_a_resume_made_stale(tmp_path):
    """A resume with --no-mlflow added a better trial and made its final model; `sync` then kept the study run's old
    final test (trial 1's metrics, report and model) and its plot of the first run's trials, without a word, and
    export's MLflow fallback fetched trial 1's model for trial 2. The run's final test is replaced, the plot redrawn,
    and export does not take a model of another final test."""
    import json

    from ecg_automl.tflite.export import _final_model_from_mlflow
    from search import Tracker, TrackingConfig

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    tracker = Tracker(TrackingConfig(f"sqlite:///{tmp_path / 'mlflow.db'}", (tmp_path / "art").as_uri(), "st"))
    study = _study_done_during_an_outage(tmp_path, "st", storage)
    study.set_user_attr("final", {**study.user_attrs["final"], "model_sha256": "1" * 64})
    Path(study.user_attrs["final"]["model_path"]).parent.mkdir(parents=True)
    Path(study.user_attrs["final"]["model_path"]).write_bytes(b"trial 1's final model")
    first = tracker.sync(study, study_run=True)
    assert first["created"] == 3 and "final test back-filled" in " ".join(first["study_run"])
    parent = study.user_attrs["mlflow_parent_run_id"]
    assert tracker.client.get_run(parent).data.tags["final_model.sha256"] == "1" * 64  # what the run's copy is
    history = tracker.client.get_run(parent).data.metrics  # (the plot's file is compared below)
    dist = {"learning_rate": optuna.distributions.FloatDistribution(1e-3, 1e-2, log=True)}
    study.add_trial(optuna.trial.create_trial(  # the resume's better trial, and its final test
        params={"learning_rate": 0.005}, distributions=dist, value=0.9,
        user_attrs={"config": {"learning_rate": 0.005}, "threshold": 0.3, "fold_metrics": [{"f1": 0.9}],
                    "objective_names": ["quality"]}))
    new = {**study.user_attrs["final"], "trial": 2, "model_sha256": "2" * 64,  # its file gone since
           "model_path": str(tmp_path / "runs" / "st" / "final-trial2.keras"),
           "abnormal": {**study.user_attrs["final"]["abnormal"], "f1": 0.123}}
    study.set_user_attr("final", new)
    assert _final_model_from_mlflow(study, tracker) is None  # the run's model is trial 1's
    again = tracker.sync(study, study_run=True)
    assert again["created"] == 1
    assert ("final test of trial 2 replaced that of trial 1, made before the study's best trial changed (test.* "
            "metrics, final_test.json, final_test.txt, final_confusion_matrix.png)") in again["study_run"], again
    assert "plots back-filled (optimization_history.png)" in again["study_run"]
    held = tracker.logged_json(parent, "final_test.json")
    assert held["trial"] == 2 and held["model_sha256"] == "2" * 64
    # the new model's file was gone: the run's copy is still trial 1's, and said to be, so export does not take it
    assert tracker.client.get_run(parent).data.tags["final_model.sha256"] == "1" * 64
    assert _final_model_from_mlflow(study, tracker) is None
    assert tracker.client.get_run(parent).data.metrics["test.f1"] == 0.123 != history["test.f1"]
    quiet = tracker.sync(study, study_run=True)
    assert (quiet["created"], quiet["updated"]) == (0, 0) and not any("replaced" in d for d in quiet["study_run"])
    assert json.dumps(quiet["study_run"]).count("plots") == 0
    study.set_user_attr("final", {**new, "model_sha256": "3" * 64})  # the same trial's final model, made again
    remade = tracker.sync(study, study_run=True)
    assert any(d.startswith("final test of trial 2 replaced by the study's newer one of the same trial")
               for d in remade["study_run"]), remade


def test_a_study_storage_that_fails_in_use_is_one_error_and_the_study_resumes(tmp_path, monkeypatch):
    """A full disk (or the database file deleted, or made read-only) under a running search was a 100-200 line
    traceback ending in Optuna's "AssertionError: Should not reach", exit 1: one StorageError (exit 2) now says what
    the database said and that the same command resumes."""
    import sqlite3

    import sqlalchemy.exc
    from test_search import tiny_settings

    from search import StorageError, run_search

    storage = f"sqlite:///{tmp_path / 'o.db'}"
    real = optuna.storages.RDBStorage._create_new_trial

    def full(self, *args, **kwargs):
        raise sqlalchemy.exc.OperationalError("INSERT INTO trials", {}, sqlite3.OperationalError(
            "database or disk is full"))

    from search import Tracker, TrackingConfig

    cfg = TrackingConfig(f"sqlite:///{tmp_path / 'mlflow.db'}", (tmp_path / "art").as_uri(), "full")
    done = run_search("full", tiny_settings(tmp_path), n_trials=1, storage=storage, tracking=cfg, progress=False,
                      final=False, out_dir=tmp_path).study
    parent = done.user_attrs["mlflow_parent_run_id"]
    assert Tracker(cfg).client.get_run(parent).info.status == "FINISHED"
    monkeypatch.setattr(optuna.storages.RDBStorage, "_create_new_trial", full)  # (what Optuna's cache calls)
    with pytest.raises(StorageError) as err:
        run_search("full", tiny_settings(tmp_path), n_trials=2, storage=storage, tracking=cfg, progress=False,
                   final=False, out_dir=tmp_path)
    # the resume added nothing: the finished study's run stays FINISHED (it was left FAILED, and sync kept it so)
    assert Tracker(cfg).client.get_run(parent).info.status == "FINISHED"
    assert str(err.value).startswith(f"the study storage {storage} failed in use (database or disk is full): the "
                                     f"trials it holds are kept. Fix it") and "run the same command again" in str(err.value)
    # as a failed commit reaches the loop: Optuna's "Should not reach" raised while handling the storage's error
    from search.storage import storage_write_problem

    try:
        try:
            full(None)
        except Exception:
            raise AssertionError("Should not reach.")
    except AssertionError as exc:
        assert storage_write_problem(exc) == "database or disk is full"
    assert storage_write_problem(ValueError("x")) is None
    monkeypatch.setattr(optuna.storages.RDBStorage, "_create_new_trial", real)
    result = run_search("full", tiny_settings(tmp_path), n_trials=2, storage=storage, tracking=cfg, progress=False,
                        final=False, out_dir=tmp_path)
    assert [t.state.name for t in result.study.trials] == ["COMPLETE", "COMPLETE"]


def test_a_study_storage_with_a_corrupt_page_is_one_error(tmp_path, monkeypatch):
    """A SQLite file whose header is fine but a page of its trials is not opened, then failed the first read: a
    99-line traceback ending "database disk image is malformed"."""
    import sqlite3

    import sqlalchemy.exc

    from search import StorageError
    from search.study import stored_study

    storage = f"sqlite:///{tmp_path / 'o.db'}"
    _study_done_during_an_outage(tmp_path, "bad", storage)

    def malformed(*args, **kwargs):
        raise sqlalchemy.exc.DatabaseError("SELECT", {}, sqlite3.DatabaseError("database disk image is malformed"))

    monkeypatch.setattr(optuna, "get_all_study_summaries", malformed)
    with pytest.raises(StorageError, match=re.escape(f"cannot read study storage {storage} (database disk image is "
                                                     f"malformed): restore the file from a copy")):
        stored_study("bad", storage)


def test_sync_whose_writes_fail_says_so_and_exits_1(tmp_path, monkeypatch, capsys, caplog):
    """With a store that took no writes (a read-only folder), `sync` printed "0 runs created, 1 updated" and exited
    0 while the trial's run stayed RUNNING; its warnings showed SQLAlchemy's "(raised as a result of Query-invoked
    autoflush ...)" line instead of the cause, and told the user to run `ecg-automl sync` later."""
    import logging

    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from ecg_automl.cli import main
    from search import Tracker, TrackingConfig

    storage, uri = f"sqlite:///{tmp_path / 'optuna.db'}", f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(TrackingConfig(uri, (tmp_path / "art").as_uri(), "ro"))
    study = _study_done_during_an_outage(tmp_path, "ro", storage, final=False)
    parent = tracker.study_run(study, {})
    run0 = tracker.start_trial(parent, 0, "ro", study.trials[0].user_attrs["config"])  # then the store went away

    def read_only(self, *args, **kwargs):
        raise MlflowException("(raised as a result of Query-invoked autoflush; consider using a session.no_autoflush "
                              "block if this flush is occurring prematurely)\n(sqlite3.OperationalError) unable to "
                              "open database file\n[SQL: INSERT INTO metrics]")

    for name in ("log_batch", "set_terminated", "create_run", "log_figure", "log_text", "log_artifact"):
        monkeypatch.setattr(MlflowClient, name, read_only)
    sync = ["sync", "--study", "ro", "--storage", storage, "--tracking-uri", uri, "--experiment", "ro"]
    with caplog.at_level(logging.WARNING, logger="search"):
        assert main(sync) == 1
    out, err = capsys.readouterr()
    assert "MLflow back-fill for study ro: 0 runs created, 0 updated" in out, out
    assert ("MLflow call(s) of the back-fill failed (the first: MLflow log_metrics failed (MlflowException: "
            "(sqlite3.OperationalError) unable to open database file)); trial(s) 0, 1 not fully back-filled: run "
            f"`ecg-automl sync --study ro --storage {storage} --tracking-uri {uri} --experiment ro` again once the "
            "tracking store takes writes") in err, err
    assert ("warning: not back-filled on the study run: the plots (optimization_history.png): MLflow refused the "
            "write (the warnings above say why); its end (FINISHED): MLflow refused the write") in err, err
    warned = [r.getMessage() for r in caplog.records if r.name == "search" and r.levelno == logging.WARNING]
    assert warned and all("run `ecg-automl sync` again once the store takes writes" in w for w in warned), warned
    assert not any("raised as a result of" in w or "study goes on" in w for w in warned), warned
    assert tracker.client.get_run(run0).info.status == "RUNNING"

    monkeypatch.undo()  # the store takes writes again: the next sync completes both trials, exit 0
    assert main(sync) == 0
    out, err = capsys.readouterr()
    assert ("MLflow back-fill for study ro: 1 runs created, 2 updated; study run: plots back-filled "
            "(optimization_history.png), ended FINISHED") in out
    # what no sync can give back was not said at all
    assert ("warning: not back-filled on the trial runs (made from each trial's predictions and weights, which the "
            "study does not keep; `ecg-automl export --trial N` retrains a model MLflow lacks): trials 0, 1: "
            "confusion_matrix.png, roc.png, model/model.keras") in err, err
    assert tracker.client.get_run(run0).info.status == "FINISHED"


def test_export_with_a_store_that_is_not_the_studys_is_refused_and_creates_none(tmp_path):
    """Run from another folder, export opened the default ./runs/mlflow.db there: it created that store, could not
    fetch the trial's model from it (and retrained it), and warned three times that logging the file failed."""
    from ecg_automl.tflite.export import export_trial
    from search import Tracker, TrackingConfig, TrackingError

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = _study_done_during_an_outage(tmp_path, "away", storage)
    home = TrackingConfig(f"sqlite:///{tmp_path / 'mlflow.db'}", (tmp_path / "art").as_uri(), "e")
    Tracker(home).study_run(study, {})
    elsewhere = tmp_path / "elsewhere" / "runs" / "mlflow.db"
    with pytest.raises(TrackingError, match=r"which is not in the tracking store sqlite:///.*elsewhere/runs/mlflow.db: "
                                            r"give the store the study was created with .*, or --no-mlflow"):
        export_trial("away", storage, "best", "fp32", tmp_path / "m.tflite",
                     tracking=TrackingConfig(f"sqlite:///{elsewhere}", (tmp_path / "art").as_uri(), "e"))
    assert not elsewhere.exists() and not (tmp_path / "m.tflite").exists()


def test_export_with_a_tracking_server_that_does_not_answer_goes_on_without_mlflow(tmp_path, capsys):
    """The file is what the user came for: a server that does not answer is a warning, and export goes on (here to
    the retraining of the made-up trial's config, which lacks what training needs), as it did before it checked
    the study's store."""
    from ecg_automl.tflite.export import export_trial
    from search import TrackingConfig
    from spaces.schema import SpaceError

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    _study_done_during_an_outage(tmp_path, "down", storage)
    with pytest.raises(SpaceError, match="config lacks batch_size"):
        export_trial("down", storage, "best", "fp32", tmp_path / "m.tflite",
                     tracking=TrackingConfig("http://127.0.0.1:9", (tmp_path / "art").as_uri(), "e"))
    err = capsys.readouterr().err
    assert "warning: cannot reach the MLflow tracking store at http://127.0.0.1:9" in err, err
    assert "the export is not logged to MLflow" in err


def test_a_resume_after_one_logged_to_another_store_finds_the_study_run_again(tmp_path):
    """A resume with MLFLOW_TRACKING_URI left pointing at a server started a study run there and remembered it; the
    next resume, back in the study's own store, did not find that run and started a second study run beside the
    first, with every trial back-filled under it again. It now finds the first by its tags. A new study run says
    which versions made it."""
    import json

    from search import Tracker, TrackingConfig

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = _study_done_during_an_outage(tmp_path, "moved", storage)
    home = Tracker(TrackingConfig(f"sqlite:///{tmp_path / 'home.db'}", (tmp_path / "art").as_uri(), "e"))
    first = home.study_run(study, {})
    away = Tracker(TrackingConfig(f"sqlite:///{tmp_path / 'away.db'}", (tmp_path / "art").as_uri(), "e"))
    assert away.study_run(study, {}) != first  # not in that store: a study run there (as before)
    home = Tracker(home.config)
    assert home.study_run(study, {}) == first
    assert study.user_attrs["mlflow_parent_run_id"] == first
    assert len(home.client.search_runs([home.experiment_id])) == 1
    tags = home.client.get_run(first).data.tags
    assert tags["engine"] == "optuna" and json.loads(tags["ecg_automl.versions"])["optuna"] == optuna.__version__
    # another study of the same name (another storage) whose run is not here is not given this study's run
    other = _study_done_during_an_outage(tmp_path, "moved", f"sqlite:///{tmp_path / 'other.db'}")
    Tracker(away.config).study_run(other, {})
    assert Tracker(home.config).study_run(other, {}) != first
    # a KerasTuner study's run made by sync (searched with --no-mlflow) says its engine
    kt = _study_done_during_an_outage(tmp_path, "kt", storage)
    kt.set_user_attr("engine", "keras-tuner:random")
    home.sync(kt, study_run=True)
    assert home.client.get_run(kt.user_attrs["mlflow_parent_run_id"]).data.tags["engine"] == "keras-tuner"


def test_a_trial_whose_back_fill_lost_one_call_is_completed_by_the_next_sync(tmp_path, monkeypatch):
    """One fold's metrics lost during a sync (a single 503): the trial was reported incomplete, but its run was
    ended all the same, and the next sync, seeing fold.* metrics there, reported nothing to do: the gap stayed."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from search import Tracker, TrackingConfig

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = _study_done_during_an_outage(tmp_path, "gap", storage, final=False)
    dist = {"learning_rate": optuna.distributions.FloatDistribution(1e-3, 1e-2, log=True)}
    study.add_trial(optuna.trial.create_trial(
        params={"learning_rate": 0.005}, distributions=dist, value=0.7,
        user_attrs={"config": {"learning_rate": 0.005}, "threshold": 0.4, "objective_names": ["quality"],
                    "fold_metrics": [{"f1": 0.6}, {"f1": 0.7}, {"f1": 0.8}]}))
    tracker = Tracker(TrackingConfig(f"sqlite:///{tmp_path / 'mlflow.db'}", (tmp_path / "art").as_uri(), "gap"))
    tracker.study_run(study, {})
    log_batch, calls = MlflowClient.log_batch, []

    def one_lost(self, run_id, metrics=(), **kwargs):
        if any(m.key == "fold.f1" and m.step == 1 for m in metrics):
            calls.append(run_id)
            if len(calls) == 1:
                raise MlflowException("503 Service Unavailable")
        return log_batch(self, run_id, metrics=metrics, **kwargs)

    monkeypatch.setattr(MlflowClient, "log_batch", one_lost)
    assert tracker.sync(study, study_run=True)["incomplete"] == [2]
    run = tracker.trial_runs(study.user_attrs["mlflow_parent_run_id"])[2]
    assert run.info.status == "RUNNING"  # not ended: the next sync looks into it
    again = tracker.sync(study, study_run=True)
    assert again["incomplete"] == [] and again["updated"] >= 1
    history = tracker.client.get_metric_history(run.info.run_id, "fold.f1")
    assert sorted(m.step for m in history) == [0, 1, 2]
    assert tracker.client.get_run(run.info.run_id).info.status == "FINISHED"


def test_sync_back_fills_the_pareto_front_of_a_multi_objective_study(tmp_path, cli_env):
    """A multi-objective search logs its Pareto front (pareto_front.json and .png) on the study run at its end;
    with the tracking store away then, `sync` created the trial runs and ended the study run without them."""
    import json

    from test_search import tiny_settings

    from search import Tracker, TrackingConfig, open_study
    from search.pareto import pareto_table

    storage, uri = f"sqlite:///{tmp_path / 'optuna.db'}", f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(TrackingConfig(uri, (tmp_path / "art").as_uri(), "moo"))
    study, _ = open_study("moo", storage, tiny_settings(tmp_path, objectives=["quality", "latency"]))
    parent = tracker.study_run(study, {})  # then the store went away
    for values in ([0.7, 0.9], [0.6, 0.5], [0.5, 0.95]):  # the third is dominated
        study.add_trial(optuna.trial.create_trial(values=values))

    sync = ["sync", "--study", "moo", "--storage", storage, "--tracking-uri", uri, "--experiment", "moo"]
    out = run_cli(sync, tmp_path, cli_env)
    assert "3 runs created, 1 updated; study run: Pareto front back-filled (pareto_front.json, pareto_front.png), " \
           "ended FINISHED" in out.stdout, out.stdout
    assert tracker.client.get_run(parent).info.status == "FINISHED"
    assert {"pareto_front.json", "pareto_front.png"} <= {a.path for a in tracker.client.list_artifacts(parent)}
    rows = json.loads(Path(tracker.client.download_artifacts(parent, "pareto_front.json", str(tmp_path))).read_text())
    assert rows == pareto_table(study) and [r["trial"] for r in rows] == [0, 1]
    assert "0 runs created, 0 updated\n" in run_cli(sync, tmp_path, cli_env).stdout  # nothing twice


def test_sync_leaves_the_study_run_of_a_search_making_its_final_model_running(tmp_path, cli_env):
    """While the search trained its final model (every trial finished) `sync` ended the study run FINISHED under
    it. It now leaves it RUNNING while the search's process lives; one killed then (SIGKILL, power loss) does not
    keep the run RUNNING for good: on its host sync ends it KILLED, and elsewhere it says what to do."""
    import socket

    from search import Tracker, TrackingConfig
    from search.objective import worker_id
    from search.final_marker import FINAL_IN_PROGRESS

    storage, uri = f"sqlite:///{tmp_path / 'optuna.db'}", f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(TrackingConfig(uri, (tmp_path / "art").as_uri(), "fin"))
    study = _study_done_during_an_outage(tmp_path, "fin", storage, final=False)
    parent = tracker.study_run(study, {})
    # this test's process is the search, making trial 1's final model
    since = time.time()
    study.set_user_attr(FINAL_IN_PROGRESS, {"trial": 1, "worker": worker_id(), "since": since})
    out = run_cli(["sync", "--study", "fin", "--storage", storage, "--tracking-uri", uri, "--experiment", "fin"],
                  tmp_path, cli_env)
    assert out.stdout.splitlines() == [
        "MLflow back-fill for study fin: 2 runs created, 0 updated",
        f"study run left RUNNING: the search still appears to be running trial 1's final model ({worker_id()}, "
        f"since {time.strftime('%Y-%m-%d %H:%M', time.localtime(since))}); run sync again when it ends"], out.stdout
    assert tracker.client.get_run(parent).info.status == "RUNNING"
    assert tracker.client.list_artifacts(parent) == []  # the search logs its plots itself

    study.set_user_attr(FINAL_IN_PROGRESS, {"trial": 1, "worker": "elsewhere:4242", "since": time.time()})
    counts = tracker.sync(study, study_run=True)
    assert counts["study_run"] == [] and "run sync again when it ends (from here sync cannot tell whether that " \
        "process on elsewhere is alive: if it was killed, run sync there, or run the search command again to make " \
        "the final model)" in counts["left_running"], counts
    assert tracker.client.get_run(parent).info.status == "RUNNING"

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    worker = f"{socket.gethostname()}:{int(gone.stdout)}"  # on this host, and no longer alive
    assert int(gone.stdout) != os.getpid()
    study.set_user_attr(FINAL_IN_PROGRESS, {"trial": 1, "worker": worker, "since": time.time()})
    counts = tracker.sync(study, study_run=True)
    assert counts["left_running"] is None and counts["study_run"][-1] == "ended KILLED", counts
    assert counts["not_back_filled"] == [f"final test of trial 1 (its search, {worker}, was stopped while making "
                                         f"the final model: run the search command again to make it)"]
    assert tracker.client.get_run(parent).info.status == "KILLED"


def test_a_second_search_leaves_the_final_model_to_the_live_search_making_it(tmp_path, monkeypatch):
    """The same search command run twice at once: the second, finding every trial done, trained the final model
    too while the first was making it (both writing final-trialN.keras), and ended the study run FINISHED under the
    first one's final test."""
    import search.study as search_study
    from test_search import tiny_settings

    from search import Tracker, TrackingConfig, run_search
    from search.final_marker import FINAL_IN_PROGRESS
    from search.objective import worker_id

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    config = TrackingConfig(f"sqlite:///{tmp_path / 'mlflow.db'}", (tmp_path / "art").as_uri(), "twice")
    study = _study_done_during_an_outage(tmp_path, "twice", storage, final=False)
    since = time.time()
    marker = {"trial": 1, "worker": worker_id(), "since": since}  # this test's process is the first search
    study.set_user_attr(FINAL_IN_PROGRESS, marker)
    monkeypatch.setattr(search_study, "final_test", lambda *a, **k: pytest.fail("a second final model was trained"))
    said = []
    result = run_search("twice", tiny_settings(tmp_path), n_trials=2, storage=storage, tracking=config,
                        progress=False, print_fn=said.append, out_dir=tmp_path / "runs")
    assert result.final is None and not result.interrupted
    assert (f"trial 1's final model is being made by another search of this study, {worker_id()}, since "
            f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(since))}: this one leaves it to that one") in said[-1]
    assert "`ecg-automl export --study twice --out FILE`, with the search's --storage, once" in said[-1]
    study = optuna.load_study(study_name="twice", storage=storage)
    assert study.user_attrs[FINAL_IN_PROGRESS] == marker and not study.user_attrs.get("final")
    parent = study.user_attrs["mlflow_parent_run_id"]
    assert Tracker(config).client.get_run(parent).info.status == "RUNNING"  # the first search ends it


def test_a_search_that_cannot_see_the_one_making_the_final_model_says_so_before_making_it(tmp_path, monkeypatch):
    """A marker from another host cannot be checked from here: the search makes the final model itself (the way on
    when that search was killed), but did so without a word, though the docs said it left it to the other."""
    import search.study as search_study
    from test_search import tiny_settings

    from search import run_search
    from search.final_marker import FINAL_IN_PROGRESS

    class Stop(Exception):
        pass

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = _study_done_during_an_outage(tmp_path, "elsewhere", storage, final=False)
    since = time.time()
    study.set_user_attr(FINAL_IN_PROGRESS, {"trial": 1, "worker": "otherhost:4242", "since": since})
    monkeypatch.setattr(search_study, "final_test", lambda *a, **k: (_ for _ in ()).throw(Stop()))
    said = []
    with pytest.raises(Stop):
        run_search("elsewhere", tiny_settings(tmp_path), n_trials=2, storage=storage, progress=False,
                   print_fn=said.append, out_dir=tmp_path / "runs")
    assert (f"note: otherhost:4242 began trial 1's final model at {time.strftime('%Y-%m-%d %H:%M', time.localtime(since))}"
            f", on another host, where this search cannot tell whether it still runs: this one makes the final model "
            f"itself") in "\n".join(said), said


def _dead_search_marker(trial: int = 1) -> dict:
    """A FINAL_IN_PROGRESS marker as a search on this host leaves it when killed: its process is gone."""
    import socket

    code = "import os; from search._process import start_token; print(os.getpid(), start_token(os.getpid()))"
    pid, started = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                  check=True).stdout.split()
    assert int(pid) != os.getpid()
    return {"trial": trial, "worker": f"{socket.gethostname()}:{pid}", "since": time.time(), "started": started}


def test_sync_clears_a_dead_final_marker_so_a_second_sync_is_quiet(tmp_path, cli_env):
    """A search killed while making its final model left its marker in the study for good: every `sync` repeated
    the warning. The first sync on its host ends the study run KILLED, says so once and moves the marker to
    final_killed; a second sync changes nothing and is quiet, and `export --trial best` still says why there is no
    final model."""
    from ecg_automl.tflite.export import _no_final_model
    from search import Tracker, TrackingConfig
    from search.final_marker import FINAL_IN_PROGRESS, FINAL_KILLED, final_in_progress

    storage, uri = f"sqlite:///{tmp_path / 'optuna.db'}", f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(TrackingConfig(uri, (tmp_path / "art").as_uri(), "fin"))
    study = _study_done_during_an_outage(tmp_path, "fin", storage, final=False)
    parent = tracker.study_run(study, {})
    marker = _dead_search_marker()
    study.set_user_attr(FINAL_IN_PROGRESS, marker)
    sync = ["sync", "--study", "fin", "--storage", storage, "--tracking-uri", uri, "--experiment", "fin"]
    first = run_cli(sync, tmp_path, cli_env)
    assert "ended KILLED" in first.stdout and first.stderr.strip() == (
        f"warning: not back-filled on the study run: final test of trial 1 (its search, {marker['worker']}, was "
        f"stopped while making the final model: run the search command again to make it)\n"
        f"warning: not back-filled on the trial runs (made from each trial's predictions and weights, which the study "
        f"does not keep; `ecg-automl export --trial N` retrains a model MLflow lacks): trials 0, 1: "
        f"confusion_matrix.png, roc.png, model/model.keras"), first
    assert tracker.client.get_run(parent).info.status == "KILLED"
    assert final_in_progress(study) == (None, None)
    killed = study.user_attrs[FINAL_KILLED]
    assert {k: killed[k] for k in marker} == marker and killed["found"] >= marker["since"]

    second = run_cli(sync, tmp_path, cli_env)
    assert second.stdout == "MLflow back-fill for study fin: 0 runs created, 0 updated\n" and second.stderr == "", \
        second
    assert tracker.client.get_run(parent).info.status == "KILLED"

    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(marker["since"]))
    assert _no_final_model(study, study.best_trial, {}) == (
        f"study 'fin' has no final model (its search, {marker['worker']}, was stopped while making it on {when})")


def test_a_search_with_no_final_or_a_worker_clears_a_dead_final_marker(tmp_path):
    """A search killed while making its final model, rerun with --no-final (or joined by a worker), left its marker:
    only a final model made later cleared it. A search or worker starting on its host now clears a dead one,
    saying so; a marker of a search that is alive (another process, or another host) is left alone."""
    import socket

    from test_search import tiny_settings

    from search import run_search
    from search._process import start_token
    from search.final_marker import FINAL_IN_PROGRESS, FINAL_KILLED, final_in_progress

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = _study_done_during_an_outage(tmp_path, "fin", storage, final=False)
    lines: list[str] = []
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    try:
        live = {"trial": 1, "worker": f"{socket.gethostname()}:{child.pid}", "since": time.time(),
                "started": start_token(child.pid)}
        elsewhere = {"trial": 1, "worker": "elsewhere:4242", "since": time.time()}
        for marker in (live, elsewhere):
            study.set_user_attr(FINAL_IN_PROGRESS, marker)
            run_search("fin", tiny_settings(tmp_path), n_trials=2, storage=storage, tracking=None, progress=False,
                       final=False, print_fn=lines.append)
            assert study.user_attrs[FINAL_IN_PROGRESS] == marker and FINAL_KILLED not in study.user_attrs
    finally:
        child.kill()
        child.wait()
    assert lines == []

    for settings in (tiny_settings(tmp_path), None):  # the search with --no-final, then a worker
        dead = _dead_search_marker()
        study.set_user_attr(FINAL_IN_PROGRESS, dead)
        run_search("fin", settings, n_trials=2, storage=storage, tracking=None, progress=False, final=False,
                   print_fn=lines.append)
        assert final_in_progress(study) == (None, None)
        assert {k: study.user_attrs[FINAL_KILLED][k] for k in dead} == dead
        assert lines.pop() == (f"note: an earlier search of study 'fin' ({dead['worker']}) was stopped while making "
                               f"trial 1's final model; run the search command without --no-final to make it")


def test_a_keras_tuner_search_clears_a_dead_final_marker_too(tmp_path, monkeypatch):
    """The KerasTuner engine clears a dead marker as it starts, as the driver does (the note names the search that
    was stopped), and leaves another host's alone. Training is replaced by fixed objective values."""
    from test_search import fake_keras_tuner_training, tiny_settings

    import search.keras_tuner_engine as kte
    from search.final_marker import FINAL_IN_PROGRESS, FINAL_KILLED, final_in_progress

    fake_keras_tuner_training(monkeypatch, [0.5] * 10)
    storage, lines = f"sqlite:///{tmp_path / 'optuna.db'}", []

    def search(n_trials: int) -> optuna.Study:
        return kte.run_keras_tuner("ktfin", tiny_settings(tmp_path), tuner="random", n_trials=n_trials,
                                   out_dir=tmp_path, progress=False, storage=storage, final=False,
                                   print_fn=lines.append, trial_print_fn=lambda s: None)["study"]

    study = search(1)
    elsewhere = {"trial": 0, "worker": "elsewhere:4242", "since": time.time()}
    study.set_user_attr(FINAL_IN_PROGRESS, elsewhere)
    search(2)
    assert study.user_attrs[FINAL_IN_PROGRESS] == elsewhere and FINAL_KILLED not in study.user_attrs
    assert not [line for line in lines if line.startswith("note:")]

    dead = _dead_search_marker(trial=0)
    study.set_user_attr(FINAL_IN_PROGRESS, dead)
    search(3)
    assert final_in_progress(study) == (None, None)
    assert {k: study.user_attrs[FINAL_KILLED][k] for k in dead} == dead
    assert (f"note: an earlier search of study 'ktfin' ({dead['worker']}) was stopped while making trial 0's final "
            f"model; run the search command without --no-final to make it") in lines


@pytest.mark.parametrize("fails", [False, True])
def test_the_final_phase_is_marked_while_the_final_model_is_made(tmp_path, monkeypatch, fails):
    """run_final marks the study while it makes the final model (what `sync` looks at), and clears the mark when
    it ends, also when the training fails."""
    import numpy as np
    from test_search import tiny_settings

    import search.study
    from search._process import pid_namespace, start_token
    from search.final_marker import FINAL_IN_PROGRESS, FINAL_KILLED, final_in_progress

    study = _study_done_during_an_outage(tmp_path, "fin", f"sqlite:///{tmp_path / 'optuna.db'}", final=False)
    seen = []

    def final_test(*args, **kwargs):
        seen.append(final_in_progress(study))
        if fails:
            raise RuntimeError("out of memory")
        return {"trial": 1}

    monkeypatch.setattr(search.study, "final_test", final_test)
    monkeypatch.setattr(search.study, "format_report", lambda report, title: "")
    study.set_user_attr(FINAL_KILLED, {"trial": 1, "worker": "x:1", "since": 0.0, "found": 1.0})  # an earlier search
    data = type("Data", (), {"name": "mitdb", "split": np.array(["search", "test"])})()
    with pytest.raises(RuntimeError) if fails else nullcontext():
        search.study.run_final(study, tiny_settings(tmp_path), data, tracker=None, out_dir=tmp_path,
                               print_fn=lambda s: None)
    marker, alive = seen[0]
    assert marker["trial"] == 1 and marker["worker"].endswith(f":{os.getpid()}") and alive is True
    assert marker["started"] == start_token(os.getpid()) is not None  # what tells this process from a later one
    assert marker["pidns"] == pid_namespace() is not None  # and a container's pids from another's
    assert study.user_attrs[FINAL_IN_PROGRESS] is None and final_in_progress(study) == (None, None)
    assert ("final" in study.user_attrs) is not fails
    assert (study.user_attrs[FINAL_KILLED] is None) is not fails  # the final model it did not make is made now


def test_a_final_model_file_another_study_saved_is_said_and_not_taken_for_this_study_s(tmp_path, monkeypatch):
    """Two studies of one name (two storages) with one --out-dir: the second's search replaced the first's final
    model without a word, and the first's resume then took the file for its own ("already done"). The search says
    it replaces a file its study did not save, and a resume whose file is not the one it saved makes it again."""
    import numpy as np
    from test_search import tiny_settings

    import search.study
    from search.final import file_sha256

    study = _study_done_during_an_outage(tmp_path, "fin", f"sqlite:///{tmp_path / 'optuna.db'}", final=False)
    made = []

    def final_test(config, threshold, data, *, out_path, **kwargs):
        out_path.write_bytes(f"model {len(made)}".encode())
        made.append(out_path)
        return {"trial": 1, "model_path": str(out_path.resolve()), "model_sha256": file_sha256(out_path)}

    monkeypatch.setattr(search.study, "final_test", final_test)
    monkeypatch.setattr(search.study, "format_report", lambda report, title: f"report: {title}")
    data = type("Data", (), {"name": "mitdb", "split": np.array(["search", "test"])})()
    path = tmp_path / "fin" / "final-trial1.keras"
    path.parent.mkdir()
    path.write_bytes(b"another study's final model")

    def final():
        said = []
        search.study.run_final(study, tiny_settings(tmp_path), data, tracker=None, out_dir=tmp_path,
                               print_fn=said.append)
        return said

    said = final()
    assert len(made) == 1 and (f"note: {path} holds a final model this study did not save (another study named "
                               f"'fin', in another storage, with this --out-dir?): this search replaces it") in said[1]
    assert final() == ["report: final test of trial 1 (already done)"] and len(made) == 1
    path.write_bytes(b"the other study's final model again")
    said = final()
    assert len(made) == 2 and said[0] == (f"note: trial 1's final model, {path.resolve()}, was replaced since its "
                                          f"search saved it (another study of the same name, in another storage, "
                                          f"saved its own final model there with the same --out-dir; or the file "
                                          f"was changed): making it again")
    assert not any("holds a final model this study did not save" in line for line in said)


def test_a_final_marker_whose_pid_was_given_to_a_later_process_reads_as_dead():
    """A search killed while making its final model left a marker naming its pid; after the crash another process
    could get that pid, and the marker read as alive for good (sync kept the study run RUNNING, with no way out).
    The marker records the process's start time: a live pid started at another time is not that search. A marker
    written before start times were recorded is judged by its pid alone, as before."""
    from search._process import start_token
    from search.objective import worker_id
    from search.final_marker import FINAL_IN_PROGRESS, final_in_progress

    study = optuna.create_study()
    ours = start_token(os.getpid())
    assert ours is not None and ours.count("/") == 1, ours  # Linux: /proc is there
    for started, alive in ((ours, True), (f"{ours}0", False), (None, True)):
        marker = {"trial": 1, "worker": worker_id(), "since": time.time(), "started": started}
        study.set_user_attr(FINAL_IN_PROGRESS, marker)
        assert final_in_progress(study) == (marker, alive), started

    # a process that runs now: its start is its own, and not this process's
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        theirs = start_token(child.pid)
        assert theirs is not None and theirs != ours
        for started, alive in ((theirs, True), (ours, False)):
            study.set_user_attr(FINAL_IN_PROGRESS, {"trial": 1, "worker": f"{worker_id().rpartition(':')[0]}:"
                                                    f"{child.pid}", "since": time.time(), "started": started})
            assert final_in_progress(study)[1] is alive, started
    finally:
        child.kill()
        child.wait()


def test_a_final_marker_from_another_pid_namespace_is_not_judged_from_here():
    """Two containers that share a host name (host networking) but not their pids: a search making its final model
    in one left a marker whose pid the other cannot see, so a sync or search there read it as dead, ended the study
    run KILLED and cleared the marker of a live search. The marker records its pid namespace; another one's is
    treated like another host's (alive unknown, left alone, and the note says why)."""
    from search._process import pid_namespace
    from search.objective import worker_id
    from search.final_marker import FINAL_IN_PROGRESS, _final_running_note, clear_dead_final, final_in_progress

    ours = pid_namespace()
    assert ours is not None and ours.startswith("pid:["), ours
    study = optuna.create_study()
    dead = _dead_search_marker()
    for pidns, alive in ((ours, False), (None, False), ("pid:[1]", None)):
        marker = {**dead, "pidns": pidns}
        study.set_user_attr(FINAL_IN_PROGRESS, marker)
        assert final_in_progress(study) == (marker, alive), pidns
    assert clear_dead_final(study) is None and study.user_attrs[FINAL_IN_PROGRESS] == marker  # left alone
    assert (f"on {worker_id().rpartition(':')[0]} (another container: pid namespace pid:[1]) is alive"
            in _final_running_note(marker, None))


def test_a_failing_store_is_one_warning_per_call_not_an_mlflow_traceback(tmp_path, caplog):
    """An unwritable SQLite store printed MLflow's own SQLAlchemy traceback (logger mlflow.store.db.utils, at
    ERROR) for every failed call: 44 of them, ~2,000 lines, in a 3-trial study, burying the tool's one-line
    warnings. They are shown with --log-level DEBUG only."""
    import logging
    import sqlite3

    from search import Tracker, TrackingConfig

    tracker = Tracker(TrackingConfig(f"sqlite:///{tmp_path / 'mlflow.db'}", (tmp_path / "art").as_uri(), "x"))
    run_id = tracker.client.create_run(tracker.experiment_id).info.run_id
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        db.execute("DROP TABLE metrics")  # every metric write is now a SQLAlchemy OperationalError
    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append
    store_log = logging.getLogger("mlflow.store.db.utils")
    store_log.addHandler(handler)
    try:
        caplog.set_level(logging.WARNING)
        tracker.log_metrics(run_id, {"a": 1.0})
        assert len(tracker.failures) == 1 and "log_metrics failed" in tracker.failures[0]
        assert seen == []
        warnings = [r.getMessage() for r in caplog.records if r.name == "search"]
        assert len(warnings) == 1 and "run `ecg-automl sync` later" in warnings[0]
        assert store_log.level == logging.NOTSET  # left as it was
        caplog.set_level(logging.DEBUG)
        tracker.log_metrics(run_id, {"a": 2.0})
        assert len(tracker.failures) == 2 and [r.levelname for r in seen] == ["ERROR"] and seen[0].exc_info
    finally:
        store_log.removeHandler(handler)


def test_the_back_fill_after_the_trials_is_a_sentence(tmp_path, caplog):
    """The search's own back-fill at the end of its trials warned with a raw dict: "MLflow back-filled:
    {'created': 1, 'updated': 0}"."""
    import logging

    from test_search import tiny_settings

    from search import Tracker, TrackingConfig, open_study, run_search

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study, _ = open_study("s", storage, tiny_settings(tmp_path))
    study.add_trial(optuna.trial.create_trial(
        params={"learning_rate": 0.002}, value=0.5, user_attrs={"config": {"learning_rate": 0.002}},
        distributions={"learning_rate": optuna.distributions.FloatDistribution(1e-3, 1e-2, log=True)}))
    tracking = TrackingConfig(f"sqlite:///{tmp_path / 'mlflow.db'}", (tmp_path / "art").as_uri(), "x")
    caplog.set_level(logging.WARNING)
    run_search("s", tiny_settings(tmp_path), n_trials=1, storage=storage, tracking=tracking, final=False,
               progress=False, out_dir=tmp_path / "runs")  # the study holds its trial, which MLflow never got
    warnings = [r.getMessage() for r in caplog.records if r.name == "search"]
    assert "MLflow back-fill: 1 trial runs created and 0 completed (runs the tracking store missed, or trials " \
           "of stopped workers)" in warnings, warnings
    assert len(Tracker(tracking).trial_runs(study.user_attrs["mlflow_parent_run_id"])) == 1


# --------------------------------------------------------------------------------------------
# signals outside the trials
# --------------------------------------------------------------------------------------------
_SLOW_FINAL = """
import sys, time
import search.study as study
study.run_trials = lambda *a, **k: True  # the study is done: go straight to the final model
def slow_final(*a, **k):
    print("training the final model", flush=True)
    time.sleep(120)
study.run_final = slow_final
from ecg_automl.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("sig, code", [("SIGTERM", 143), ("SIGINT", 130)])
def test_a_signal_while_the_final_model_trains_is_one_line_and_its_exit_code(tmp_path, cli_env, sig, code):
    """SIGTERM during the final model killed the search silently (the handler was only installed for the
    trials), and a SIGTERM during a trial exited 130 as if Ctrl-C had been pressed."""
    import signal

    args = ["search", "--space", tiny_space_file(tmp_path), "--trials", 1, "--folds", 2, "--records",
            ",".join(SMALL_RECORDS), "--study", "sig", "--storage", f"sqlite:///{tmp_path / 'o.db'}", "--no-mlflow",
            "--quiet"]
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_FINAL, *map(str, args)], cwd=tmp_path, env=cli_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert "final model" in line, (line, proc.stderr.read() if proc.poll() is not None else "")
    proc.send_signal(getattr(signal, sig))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert err.strip() == "interrupted; run the same command again to resume the study"


_TWO_PRESSES = """
import sys, time
import search.study as study
def trials_running(*a, **k):  # the first Ctrl-C lands here, among the trials
    print("trials running", flush=True)
    time.sleep(120)
study._optimize_until = trials_running
calls = []
def slow_wrap_up(*a, **k):  # stands in for the MLflow wrap-up after the first Ctrl-C (the study's run closed)
    calls.append(1)
    if len(calls) == 1:
        print("wrapping up", flush=True)
        time.sleep(120)
study._end_stopped_study_run = slow_wrap_up
from ecg_automl.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_second_ctrl_c_says_what_it_does_not_the_first_line_again(tmp_path, cli_env):
    """The first Ctrl-C of a search prints its line (resume) and lets the wrap-up run; a second one there stopped
    at once and printed "interrupted; run the same command again ..." a second time. It now says what is new:
    it stopped at once, before MLflow was brought up to date, which `sync` makes up (the resume said again, as
    the only line when the first press came during the final model and printed none)."""
    import argparse
    import signal

    from ecg_automl import cli
    from search import interrupt

    args = ["search", "--space", tiny_space_file(tmp_path), "--trials", 1, "--folds", 2, "--records",
            ",".join(SMALL_RECORDS), "--study", "twice", "--storage", f"sqlite:///{tmp_path / 'o.db'}",
            "--no-mlflow", "--quiet"]
    proc = subprocess.Popen([sys.executable, "-c", _TWO_PRESSES, *map(str, args)], cwd=tmp_path, env=cli_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    for expected in ("trials running", "wrapping up"):
        lines.append(proc.stdout.readline())
        while lines[-1] and expected not in lines[-1]:
            lines.append(proc.stdout.readline())
        assert expected in lines[-1], (lines, proc.stderr.read() if proc.poll() is not None else "")
        proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    said = [line.strip() for line in [*lines, *out.splitlines(), *err.splitlines()] if "interrupted" in line]
    assert said == ["interrupted while no trial of this process was running; run the same command again to "
                    "resume the study",
                    "interrupted again (Ctrl-C): stopped at once; the study keeps its finished trials: run the "
                    "same command again to resume it"], said
    # with MLflow, the second press also cut its wrap-up short: the line names the command that makes it up
    interrupt.clear()
    for _ in range(2):
        with pytest.raises(KeyboardInterrupt):
            interrupt._handler(signal.SIGTERM, None)
    try:
        line = cli._interrupted_again(argparse.Namespace(study="twice", storage=None, no_mlflow=False,
                                                         mlflow_config=None, tracking_uri="sqlite:///m.db",
                                                         experiment=None))
    finally:
        interrupt.clear()
    assert line.startswith("interrupted again (SIGTERM): stopped at once, before MLflow was brought up to date")
    assert line.endswith("resume it, and `ecg-automl sync --study twice --tracking-uri sqlite:///m.db` to update "
                         "MLflow"), line


def test_a_worker_stopped_after_another_finished_the_study_leaves_its_run_finished(tmp_path):
    """A worker stopped with Ctrl-C while it waited for the last trial (which another worker then finished) closed
    the study's run as KILLED over the other's FINISHED, and sync never repaired it."""
    from search import Tracker, TrackingConfig
    from search.study import _end_stopped_study_run

    tracker = Tracker(TrackingConfig(f"sqlite:///{tmp_path / 'mlflow.db'}", (tmp_path / "art").as_uri(), "w"))
    study = optuna.create_study(study_name="w", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    parent = tracker.study_run(study, {})
    study.set_user_attr("mlflow_parent_run_id", parent)
    tracker.end_study(parent, "FINISHED")
    _end_stopped_study_run(study, tracker, "KILLED")
    assert tracker.client.get_run(parent).info.status == "FINISHED"
    tracker.client.update_run(parent, "RUNNING")  # a study this process was still running: closed as stopped
    _end_stopped_study_run(study, tracker, "KILLED")
    assert tracker.client.get_run(parent).info.status == "KILLED"


def _running_trial(study, storage_obj, *, interval=None, beat_age_s: float = 0.0):
    """A RUNNING trial with a heartbeat ``beat_age_s`` old, as a worker beating every ``interval`` s leaves it."""
    import sqlalchemy

    from search.storage import HEARTBEAT_ATTR

    trial = study.ask()
    if interval is not None:
        trial.set_user_attr(HEARTBEAT_ATTR, interval)
    rdb = getattr(storage_obj, "_backend", storage_obj)
    rdb.record_heartbeat(trial._trial_id)
    engine = sqlalchemy.create_engine(rdb.url)
    with engine.begin() as conn:  # the beat as old as asked, without waiting for it
        conn.execute(sqlalchemy.text("UPDATE trial_heartbeats SET heartbeat = datetime(heartbeat, :age) "
                                     "WHERE trial_id = :id"), {"age": f"-{beat_age_s} seconds", "id": trial._trial_id})
    engine.dispose()
    return trial


def test_a_worker_judges_a_trial_by_the_heartbeat_of_the_worker_running_it(tmp_path):
    """A worker started with --heartbeat 1 failed after 4 s the live trials of workers beating every 30 s (the
    default), and each of those workers then crashed reporting its result. A trial now carries its worker's
    interval and is stale only after 4 of those beats; a trial without it (an older worker's) is judged as before."""
    from search import fail_stale_trials, make_storage
    from search.storage import grace_period

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="hb", storage=make_storage(url, heartbeat=30))
    slow = _running_trial(study, study._storage, interval=30, beat_age_s=10)  # 10 s: alive on a 30 s beat
    old = _running_trial(study, study._storage, beat_age_s=10)  # no interval recorded: this worker's grace
    gone = _running_trial(study, study._storage, interval=30, beat_age_s=150)  # 5 beats missed
    fast_worker = optuna.load_study(study_name="hb", storage=make_storage(url, heartbeat=1))
    assert fail_stale_trials(fast_worker) == [old.number, gone.number]
    states = {t.number: t.state.name for t in fast_worker.get_trials()}
    assert states[slow.number] == "RUNNING" and states[old.number] == states[gone.number] == "FAIL"
    # the longer grace holds for Optuna's own check before each trial it starts, and goes once the trial does
    assert getattr(fast_worker._storage, "_backend", fast_worker._storage).grace_period == 120
    study.tell(slow, 0.5)
    fail_stale_trials(fast_worker)
    assert getattr(fast_worker._storage, "_backend", fast_worker._storage).grace_period == 4
    assert grace_period(0.5) == 4 and grace_period(30) == 120  # 0.5 s beats every 1 s: 2 s of grace was 2 beats
    # the retries are queued by the storage's callback, once each
    retried = sorted(t.system_attrs["failed_trial"] for t in fast_worker.get_trials(states=(TrialState.WAITING,)))
    assert retried == [old.number, gone.number]


def test_a_worker_whose_trial_another_failed_goes_on(tmp_path):
    """When another worker failed this worker's running trial (it paused longer than the grace period), Optuna
    refused the result ("Cannot tell a FAIL trial") and the worker ended with a traceback, the trial's work lost.
    It now says what happened and goes on: the retry is run; an error of its own still ends it."""
    from search import make_storage
    from search.study import _optimize_until

    study = optuna.create_study(study_name="hb", storage=make_storage(f"sqlite:///{tmp_path / 'o.db'}", heartbeat=30))

    def objective(trial):
        if trial.number == 0:  # a trial of this process failed by another worker while it ran
            trial.storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
        return 0.5
    said: list[str] = []
    _optimize_until(study, objective, 2, None, [], poll=0.01, say=said.append)
    assert [(t.number, t.state.name) for t in study.get_trials()] == [(0, "FAIL"), (1, "COMPLETE"), (2, "COMPLETE")]
    assert len(said) == 1 and said[0].startswith("trial 0 was failed by another worker while it ran here"), said

    def broken_callback(study, trial):
        raise RuntimeError("a callback of this process")
    with pytest.raises(RuntimeError, match="a callback of this process"):
        _optimize_until(study, lambda t: 1 / 0, 4, None, [broken_callback], poll=0.01, say=said.append)


def test_a_retried_trial_starts_without_the_dead_trials_run(tmp_path):
    """A retry of a dead worker's trial starts with copies of its user attributes: started while the tracking store
    was down, it kept the dead trial's mlflow_run_id, its results overwrote that run, and `sync` flipped the run
    between the two trials' states at every call. A retry now starts clean (its worker's interval recorded); a trial
    the search re-queued itself keeps what it was given; and sync no longer takes another trial's run for its own."""
    from search import make_storage
    from search.objective import _start_fresh
    from search.storage import HEARTBEAT_ATTR

    study = optuna.create_study(study_name="r", storage=make_storage(f"sqlite:///{tmp_path / 'o.db'}", heartbeat=7))
    inherited = {"mlflow_run_id": "dead0run", "threshold": 0.3, "mean_metrics": {"f1": 0.4}, "fail_reason": "x",
                 "worker": "host:1"}
    study.add_trial(optuna.trial.create_trial(state=TrialState.WAITING, params={}, distributions={},
                                              user_attrs=inherited, system_attrs={"failed_trial": 0}))
    study.enqueue_trial({}, user_attrs={"retry_of": 3})  # the search's own re-queue (Ctrl-C) keeps what it is given
    retry, requeued = study.ask(), study.ask()
    _start_fresh(retry)
    _start_fresh(requeued)
    got = study._storage.get_trial(retry._trial_id).user_attrs
    assert got["mlflow_run_id"] is None and got["threshold"] is None and got["mean_metrics"] == {}
    assert got["fail_reason"] is None and got[HEARTBEAT_ATTR] == 7 and got["worker"] == "host:1"
    assert study._storage.get_trial(requeued._trial_id).user_attrs == {"retry_of": 3, HEARTBEAT_ATTR: 7}
    # the retry completes: its run says nothing of the dead trial's failure ("None" was a tag)
    from search import Tracker, TrackingConfig

    tracker = Tracker(TrackingConfig(f"sqlite:///{tmp_path / 'mlflow.db'}", (tmp_path / "art").as_uri(), "r"))
    parent = tracker.study_run(study, {})
    run = tracker.start_trial(parent, retry.number, "r", {})
    study.tell(retry, 0.7)
    tracker.end_trial(study._storage.get_trial(retry._trial_id), run)
    tags = tracker.client.get_run(run).data.tags
    assert tags["optuna.state"] == "COMPLETE" and "fail_reason" not in tags and "prune_reason" not in tags


def test_sync_ignores_a_recorded_run_of_another_trial_and_fails_stale_trials(tmp_path, cli_env):
    """`sync` found a trial's run by the recorded mlflow_run_id alone, so a retry that inherited the dead trial's id
    took that run; and after the only worker was killed it left the trial and its run RUNNING, saying nothing. It now
    takes a run only of the trial's own number, and fails a trial whose heartbeat is stale by its worker's interval
    (the retry is queued for the next search run), ending its run FAILED."""
    from search import Tracker, TrackingConfig, make_storage

    storage, uri = f"sqlite:///{tmp_path / 'optuna.db'}", f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(TrackingConfig(uri, (tmp_path / "art").as_uri(), "hb"))
    from test_search import tiny_settings

    from search import open_study

    study, _ = open_study("hb", storage, tiny_settings(tmp_path))
    parent = tracker.study_run(study, {})
    study.set_user_attr("mlflow_parent_run_id", parent)
    first = tracker.start_trial(parent, 0, "hb", {"learning_rate": 0.002})
    dist = {"learning_rate": optuna.distributions.FloatDistribution(1e-3, 1e-2, log=True)}
    for i, value in enumerate((0.5, 0.6)):  # trial 1 recorded trial 0's run as its own
        study.add_trial(optuna.trial.create_trial(
            params={"learning_rate": 0.002}, distributions=dist, value=value,
            user_attrs={"config": {"learning_rate": 0.002}, "threshold": 0.4, "fold_metrics": [{"f1": value}],
                        "objective_names": ["quality"], "mlflow_run_id": first}))
    study = optuna.load_study(study_name="hb", storage=make_storage(storage, heartbeat=30))
    dead = _running_trial(study, study._storage, interval=2, beat_age_s=60)  # its only worker was killed
    run = tracker.start_trial(parent, dead.number, "hb", {})
    study._storage.set_trial_user_attr(dead._trial_id, "mlflow_run_id", run)
    out = run_cli(["sync", "--study", "hb", "--storage", storage, "--tracking-uri", uri, "--experiment", "hb"],
                  tmp_path, cli_env)
    assert f"trial(s) {dead.number}: RUNNING without a heartbeat" in out.stdout, out
    runs = {r.data.tags["optuna.trial_number"]: r for r in tracker._nested_runs(parent)}
    assert runs["0"].data.metrics.get("objective.quality") == 0.5 and runs["1"].data.metrics["objective.quality"] == 0.6
    assert runs[str(dead.number)].info.status == "FAILED"
    states = [t.state.name for t in study.get_trials()]
    assert states[dead.number] == "FAIL" and states[-1] == "WAITING"  # the retry, for the next search run
    # within its grace period a killed worker's trial looks alive: left alone, which sync said nothing about
    recent = _running_trial(study, study._storage, interval=2, beat_age_s=1)
    study._storage.set_trial_user_attr(recent._trial_id, "worker", "otherhost:77")
    out = run_cli(["sync", "--study", "hb", "--storage", storage, "--tracking-uri", uri, "--experiment", "hb"],
                  tmp_path, cli_env)
    assert (f"trial(s) {recent.number} still RUNNING (otherhost:77, since " in out.stdout
            and "its missing heartbeat (8 s after its last one): run sync again then" in out.stdout), out.stdout


def test_a_deleted_mlflow_experiment_is_named_with_the_ways_on(tmp_path):
    """An experiment deleted in MLflow (in its trash): a search died with MLflow's "must be in the 'active' state"
    traceback after the data had loaded, and `sync` said it back-filled 0 runs, exit 0."""
    from search import TrackingConfig, TrackingError
    from search.tracking import Tracker

    config = TrackingConfig(f"sqlite:///{tmp_path / 'mlflow.db'}", (tmp_path / "art").as_uri(), "gone")
    tracker = Tracker(config)
    tracker.client.delete_experiment(tracker.check())
    for step in ("ping", "check"):  # ping: before a search loads its data (minutes on a full database)
        with pytest.raises(TrackingError, match=r"MLflow experiment 'gone' \(id \d+\) in sqlite:///.* was deleted: "
                                                r"restore it from MLflow's trash \(`mlflow experiments restore"):
            getattr(Tracker(config), step)()
    missing = TrackingConfig(f"sqlite:///{tmp_path / 'none' / 'mlflow.db'}", None, "gone")
    Tracker(missing).ping()  # a store not there yet: nothing to look at, and nothing created
    assert not (tmp_path / "none").exists()


def test_a_tracking_server_behind_basic_auth_is_reached_with_the_uri_s_credentials(tmp_path):
    """urllib read `user:pw@` as part of the host name: a tracking URI with credentials was "unreachable" (Name or
    service not known) while the server answered, though MLflow's own client sends them as basic auth."""
    import base64
    import http.server
    import threading

    from search import TrackingConfig, TrackingError
    from search.tracking import Tracker

    seen = []

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append((self.path, self.headers.get("Authorization")))
            ok = self.headers.get("Authorization") == "Basic " + base64.b64encode(b"user:p@ss").decode()
            self.send_response(404 if ok and self.path != "/health" else 200 if ok else 401)  # no MLflow API here
            self.end_headers()
            self.wfile.write(b"OK")

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        Tracker(TrackingConfig(f"http://user:p%40ss@127.0.0.1:{port}", None, "x")).ping()
        assert seen[0] == ("/health", "Basic " + base64.b64encode(b"user:p@ss").decode())
        with pytest.raises(TrackingError, match=r"http://user:\*\*\*@127\.0\.0\.1:\d+: HTTP Error 401"):
            Tracker(TrackingConfig(f"http://user:wrong@127.0.0.1:{port}", None, "x")).ping()
    finally:
        server.shutdown()


def _check_mlflow_store(url: str) -> str:
    from search import Tracker, TrackingConfig

    try:
        Tracker(TrackingConfig(url, None, "together")).check()
        return "ok"
    except Exception as exc:  # reported, not raised: the parent asserts on all of them
        return repr(exc)[:300]


def test_workers_started_together_on_a_fresh_mlflow_store_all_open_it(tmp_path):
    """A study searched with --no-mlflow, then workers started together with MLflow: each process's client created
    and migrated the new SQLite store at once (5 rounds in 5 had one fail: "Online migration expected to match one
    row", "table _alembic_tmp_latest_metrics already exists", which a retry could not mend)."""
    import mlflow  # noqa: F401  -- imported before the fork, as a search has it

    _four_processes_open_new_stores(_check_mlflow_store, tmp_path, "mlflow")
