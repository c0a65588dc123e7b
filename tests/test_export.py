"""TFLite as a first-class citizen: export of a real study's model in every mode, TensorFlow-free
prediction on a real record, the latency gate, a multi-objective Pareto study, and the bench-server."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli
from test_search import TINY, tiny_settings, tracking

from ecg_automl.tflite import MODES, op_list
from search import Tracker, run_search


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A real 2-trial study (final model trained on DS1 patients), exported in all four modes."""
    from ecg_automl.tflite.export import export_trial

    tmp = tmp_path_factory.mktemp("export")
    storage = f"sqlite:///{tmp / 'o.db'}"
    run_search("ex", tiny_settings(tmp), n_trials=2, storage=storage, tracking=tracking(tmp), out_dir=tmp / "runs",
               progress=False, pruner="none", print_fn=lambda s: None)
    out = {}
    for mode in MODES:
        meta = export_trial("ex", storage, "best", mode, tmp / f"model-{mode}.tflite", tracking=tracking(tmp),
                            verify_beats=1500, runs=50)
        out[mode] = (tmp / f"model-{mode}.tflite", meta)
    return tmp, storage, out


def test_each_written_file_computes_what_the_keras_model_does_on_held_out_beats(exported):
    """The written .tflite files, run apart from the export on held-out beats, against the study's Keras model; and
    the export's own verification numbers describe a real comparison (a quantised file never matches Keras to
    the last bit: a verification of Keras against itself reads 0 and agrees on every beat)."""
    import keras

    from ecg_automl.tflite import TFLiteModel
    from search import load_study_data, open_study, predict
    from spaces import SearchSpace, model_inputs

    _, storage, out = exported
    study, settings = open_study("ex", storage, None, heartbeat=None)
    final = study.user_attrs["final"]
    config = study.trials[final["trial"]].user_attrs["config"]
    test = load_study_data(settings, SearchSpace.from_yaml(settings.space_yaml)).test_part()
    test = test.subset(np.linspace(0, len(test) - 1, 400).astype(int))
    keras_prob = predict(keras.models.load_model(final["model_path"], compile=False), config, test)
    tolerance = {"fp32": 1e-4, "fp16": 5e-3, "dynamic": 0.05, "int8": 0.2}
    for mode, (path, meta) in out.items():
        tflite_prob = TFLiteModel(path).predict(model_inputs(config, test.X, test.rr))
        assert np.abs(tflite_prob - keras_prob).max() < tolerance[mode], mode
        if mode != "fp32":
            assert meta["verification"]["max_abs_dprob"] > 0, (mode, meta["verification"])


def test_a_retrained_trial_model_names_its_seed_and_thread_count(exported, tmp_path):
    """A trial whose model is stored nowhere is retrained by export; its weights depend on the seed and on the
    TensorFlow thread count, so the sidecar's origin names both (it said only "retrained")."""
    import optuna

    from ecg_automl.tflite.export import export_trial
    from search import tf_threads

    _, storage, _ = exported
    study = optuna.load_study(study_name="ex", storage=storage)
    other = next(t.number for t in study.trials if t.number != study.user_attrs["final"]["trial"])
    meta = export_trial("ex", storage, str(other), "fp32", tmp_path / "r.tflite", tracking=None, verify_beats=200,
                        runs=5)
    assert meta["trial"] == other
    n = tf_threads()
    assert meta["model_origin"] == f"retrained (seed 1, {n} TensorFlow thread{'' if n == 1 else 's'})"
    assert json.loads((tmp_path / "r.json").read_text())["model_origin"] == meta["model_origin"]


def test_export_at_more_threads_estimates_the_pi_from_a_one_thread_timing(exported, tmp_path, monkeypatch):
    """The Pi fit maps 1-thread host timings to a 1-thread Pi: `export --threads 2` fed it the 2-thread timing, so the
    sidecar's estimate was neither a 1- nor a 2-thread Pi's figure."""
    from ecg_automl.tflite import gate
    from ecg_automl.tflite.export import export_trial
    from ecg_automl.tflite.pi_estimate import estimate_pi4_ms

    clocks, real = [], gate.reference_clock
    monkeypatch.setattr(gate, "reference_clock", lambda mode, threads=1: clocks.append(threads) or real(mode, threads))
    _, storage, _ = exported
    meta = export_trial("ex", storage, "best", "int8", tmp_path / "t2.tflite", tracking=None, verify_beats=200,
                        runs=20, threads=2)
    lat = json.loads((tmp_path / "t2.json").read_text())["latency"]
    assert lat == meta["latency"] and lat["threads"] == 2 and clocks == [2, 1]
    assert lat["pi4_estimate_ms"] == pytest.approx(estimate_pi4_ms(lat["pi4_host_ms"], "int8"))
    assert lat["pi4_estimate_ms"] != pytest.approx(estimate_pi4_ms(lat["host_ms"], "int8"))


def test_every_mode_exports_builtin_ops_matching_keras(exported):
    from ecg_automl.tflite.pi_estimate import extrapolation_note

    tmp, _, out = exported
    tolerance = {"fp32": 1e-4, "fp16": 5e-3, "dynamic": 0.05, "int8": 0.2}
    for mode, (path, meta) in out.items():
        ops = op_list(path.read_bytes())
        assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in ops  # the LSTM branch survived as one builtin op
        assert not [o for o in ops if o.startswith("CUSTOM")]
        v = meta["verification"]
        assert v["max_abs_dprob"] < tolerance[mode], (mode, v)
        assert v["decision_agreement"] >= (1.0 if mode == "fp32" else 0.95), (mode, v)
        assert v["beats"] == 1500 and 0 <= v["tflite"]["f1"] <= 1
        side = json.loads(path.with_suffix(".json").read_text())
        assert side["mode"] == mode and side["input_length"] in (128, 192) and side["lead"] == "MLII"
        assert side["leads"] == ["MLII"] and side["channels"] == 1
        lat = side["latency"]
        assert lat["median_ms"] > 0 and lat["pi4_estimate_ms"] > lat["median_ms"]
        assert lat["pi4_estimate_note"] == extrapolation_note(lat["host_ms"], "int8" if mode == "int8" else "float32")
        # the Pi estimate is made from the figure with the host's slowdown divided out (never above the raw one
        # by more than timing jitter)
        assert 0 < lat["host_ms"] <= 1.25 * lat["median_ms"] and lat["host_slowdown"] >= 1.0
        assert side["size_kb"] == pytest.approx(path.stat().st_size / 1024)
        # the tensors a caller outside ecg-automl feeds and reads, with an int8 model's quantisation
        io = side["io"]
        assert set(io["inputs"]) == {"ecg", "rr"} and io["inputs"]["ecg"]["shape"] == [1, side["input_length"], 1]
        for d in (*io["inputs"].values(), io["output"]):
            assert d["dtype"] == ("int8" if mode == "int8" else "float32"), (mode, d)
            assert ("scale" in d) == (mode == "int8"), (mode, d)
            if mode == "int8":
                assert d["scale"] > 0 and -128 <= d["zero_point"] <= 127 and d["range"][0] < d["range"][1]
        if mode == "int8":  # the sigmoid output's top level is the ceiling the verification reports
            assert io["output"]["range"][1] == pytest.approx(v["output_max"])
    assert out["int8"][1]["size_kb"] < out["fp32"][1]["size_kb"]
    # the artifacts are on the trial's MLflow run
    tracker = Tracker(tracking(tmp))
    run_id = out["int8"][1]["trial"]
    runs = tracker.trial_runs(tracker.client.search_runs([tracker.experiment_id], "tags.`ecg_automl.kind` = 'study'")[0].info.run_id)
    arts = {a.path for a in tracker.client.list_artifacts(runs[run_id].info.run_id, "tflite/int8")}
    assert {"tflite/int8/model-int8.tflite", "tflite/int8/model-int8.json"} <= arts


def test_predict_on_a_record_without_tensorflow(exported, data_root, tmp_path, cli_env):
    """`ecg-automl predict` classifies a real MIT-BIH record with LiteRT alone: no TensorFlow, Keras,
    scikit-learn, Optuna or MLflow is imported on that path (pandas comes with wfdb, which needs it)."""
    _, _, out = exported
    model = out["int8"][0]
    code = (
        "import sys, runpy\n"
        f"sys.argv = ['ecg-automl', 'predict', {str(model)!r}, '--record', {str(data_root / 'mitdb' / '213')!r},"
        " '--annotations', 'atr']\n"
        "from ecg_automl.cli import main\n"
        "rc = main(sys.argv[1:])\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'sklearn', 'optuna', 'mlflow', 'search') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
        "sys.exit(rc)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=cli_env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "HEAVY []" in proc.stdout
    assert "beats," in proc.stdout and "against the record's annotations: accuracy" in proc.stdout
    assert "INFO: Created TensorFlow Lite XNNPACK delegate" not in proc.stderr  # native chatter, held back
    # the QRS-detector path finds about as many beats as the reference annotations
    proc = run_cli(["predict", model, "--record", data_root / "mitdb" / "213", "--json"], tmp_path, cli_env)
    summary = json.loads(proc.stdout)["summary"]
    assert 3000 < summary["beats"] < 3400 and summary["beat_source"] == "XQRS detector"


def test_not_a_tflite_file_is_refused(tmp_path, cli_env, data_root):
    bad = tmp_path / "model.tflite"
    bad.write_bytes(b"this is not a flatbuffer at all")
    bad.with_suffix(".json").write_text(json.dumps({"fs": 180, "window": 256, "input_length": 192,
                                                    "rr_features": True, "threshold": 0.5, "lead": "MLII"}))
    proc = run_cli(["predict", bad, "--record", data_root / "mitdb" / "100"], tmp_path, cli_env, check=False)
    assert proc.returncode == 2 and "not a TFLite model" in proc.stderr and "Traceback" not in proc.stderr


def test_a_study_without_test_patients_is_refused_before_the_export_retrains(tmp_path, monkeypatch):
    """A --no-final study on search records only: export retrained the trial's model for minutes, then failed on
    "the data has no test beats"."""
    import dataclasses

    import ecg_automl.tflite.export as ex
    from ecg_automl.tflite import TFLiteError

    storage = f"sqlite:///{tmp_path / 'o.db'}"
    settings = dataclasses.replace(tiny_settings(tmp_path), records=["101", "106", "119", "208"])
    run_search("ds1", settings, n_trials=1, storage=storage, tracking=None, progress=False, final=False,
               print_fn=lambda s: None)
    monkeypatch.setattr(ex, "_trial_model", lambda *a, **k: pytest.fail("retrained before the data was checked"))
    with pytest.raises(TFLiteError, match=r"study 'ds1': its mitdb data has no held-out test patient \(its --records "
                                          r"101,106,119,208 are all search records\)"):
        ex.export_trial("ds1", storage, "0", "int8", tmp_path / "m.tflite", retrain=True)


def test_latency_gate_rejects_without_training(tmp_path):
    storage = f"sqlite:///{tmp_path / 'o.db'}"
    t0 = time.time()
    result = run_search("gate", tiny_settings(tmp_path, latency_budget_ms=1e-4), n_trials=2, storage=storage,
                        tracking=tracking(tmp_path), progress=False, final=False)
    trials = result.study.trials
    assert [t.state.name for t in trials] == ["PRUNED", "PRUNED"]
    for t in trials:
        assert "budget" in t.user_attrs["prune_reason"] and t.user_attrs["latency_ms"] > 1e-4
        assert "fold_metrics" not in t.user_attrs  # rejected before any training
    assert time.time() - t0 < 120
    runs = Tracker(tracking(tmp_path)).trial_runs(result.study.user_attrs["mlflow_parent_run_id"])
    assert all(r.info.status == "KILLED" and "latency_ms" in r.data.metrics for r in runs.values())


def test_the_latency_gate_times_the_export_mode_the_study_names():
    """`search --latency-mode fp32|dynamic|fp16` had no test: each builds its own file (fp16 holds half-size
    weights), is timed on its own reference clock and estimated on the Pi's float fit."""
    from ecg_automl.tflite.gate import REFERENCE_CONFIG, LatencyGate

    measured = {mode: LatencyGate(None, mode=mode, runs=10).measure(REFERENCE_CONFIG)
                for mode in ("fp32", "dynamic", "fp16")}
    for mode, m in measured.items():
        assert m["latency_ms"] == m["pi4_estimate_ms"] > 0 and m["host_ms"] > 0, (mode, m)
    size = {mode: m["size_kb"] for mode, m in measured.items()}
    assert size["fp16"] < 0.7 * size["fp32"] and size["dynamic"] < 0.7 * size["fp32"], size


def test_the_latency_gate_prunes_over_budget_and_keeps_within_it(monkeypatch):
    """The gate's decision alone (its measurement stubbed): a model over the budget is pruned, one within it (and
    any model without a budget) goes on to training with its latency and size as objectives."""
    import optuna

    from ecg_automl.tflite.gate import LatencyGate

    class _Trial:
        def __init__(self):
            self.user_attrs = {}

        def set_user_attr(self, key, value):
            self.user_attrs[key] = value

    def gate(budget, latency):
        g = LatencyGate(budget)
        monkeypatch.setattr(g, "measure", lambda config: {"latency_ms": latency, "size_kb": 12.0, "gate_seconds": 0.1})
        return g

    trial = _Trial()
    with pytest.raises(optuna.TrialPruned, match=r"latency 5\.000 ms > budget 2 ms"):
        gate(2.0, 5.0)({}, trial)
    assert "budget" in trial.user_attrs["prune_reason"] and trial.user_attrs["latency_ms"] == 5.0
    for budget in (10.0, None):
        trial = _Trial()
        assert gate(budget, 5.0)({}, trial) == {"latency": 5.0, "size": 12.0}
        assert "prune_reason" not in trial.user_attrs


def test_tpe_models_over_budget_trials_by_how_far_over_they_are(monkeypatch):
    """A rejected trial ends PRUNED without a value or an intermediate one; while few trials had finished, TPE
    filled its "good" group with such trials, all alike to it, so in trial order (1 trained and 25 rejected: 2 of
    the 3 "good" were simply the first rejected). The gate now sets each measured trial's constraint, the ms over
    the budget: TPE ranks infeasible trials after feasible ones and by that, so it leans towards faster configs."""
    import optuna
    from optuna.samplers._tpe.sampler import _split_trials

    from ecg_automl.tflite.gate import CONSTRAINT, LatencyGate

    latencies = iter([1.0, 9.0, 8.0, 2.5, 3.0] + [7.0] * 21)
    g = LatencyGate(2.0)
    monkeypatch.setattr(g, "measure", lambda config: {"latency_ms": next(latencies), "size_kb": 12.0,
                                                      "gate_seconds": 0.1})

    def objective(trial):
        x = trial.suggest_float("x", 0, 1)
        g({}, trial)
        return x

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(0))
    study.optimize(objective, n_trials=26)
    trials = study.get_trials(deepcopy=False)
    assert trials[0].state.name == "COMPLETE" and trials[0].constraints == {CONSTRAINT: -1.0}
    assert all(t.state.name == "PRUNED" for t in trials[1:]) and trials[1].constraints == {CONSTRAINT: 7.0}
    good, _ = _split_trials(study, trials, 3)
    assert [t.number for t in good] == [0, 3, 4]  # the finished one, then the two least over the budget


def test_the_gate_times_what_will_be_deployed_an_ensemble_of_final_members():
    """With --final-members K the exported model runs K members one after another: the gate converts and
    times that, not one member (a budget that one member meets could otherwise ship a model K times over it)."""
    from ecg_automl.tflite.gate import LatencyGate

    import optuna

    from spaces import SearchSpace

    space = SearchSpace.from_dict({"name": "tiny", "params": TINY})
    config = space.suggest(optuna.create_study(sampler=optuna.samplers.RandomSampler(0)).ask())
    one, three = LatencyGate(runs=50).measure(config), LatencyGate(runs=50, members=3).measure(config)
    assert three["params"] == 3 * one["params"] and three["macs"] == 3 * one["macs"]
    assert 2.2 < three["size_kb"] / one["size_kb"] < 3.5
    # Slower, but not 3x: a tiny model's invoke has a fixed cost, so only the direction is asserted; the
    # work is pinned by the MACs above.
    assert three["host_ms"] > one["host_ms"]


def test_the_gate_divides_out_the_slowdown_it_sees_on_its_reference_model():
    """A shared host runs the same model at ~1x or ~1.8x for stretches of up to seconds; the gate times a fixed
    reference model between rounds of the candidate and divides each round's slowdown out, so timing the
    reference itself gives back its fastest speed, and a host once twice as fast halves every figure."""
    from ecg_automl.tflite.gate import REFERENCE_CONFIG, _representative, reference_clock
    from ecg_automl.tflite.convert import convert
    from spaces import build_model

    clock = reference_clock("int8", 1)
    ref = convert(build_model(REFERENCE_CONFIG, compile_model=False), REFERENCE_CONFIG, "int8",
                  _representative(REFERENCE_CONFIG, 1))
    m = clock.measure(ref, rounds=10)
    assert 0.75 < m["host_ms"] / clock.fastest_ms < 1.33, m
    assert m["slowdown"] >= 1.0 and m["median_ms"] > 0 and m["n_runs"] == 10 * clock.per_round
    before = clock.measure(ref, rounds=10)["host_ms"]
    saved = clock.fastest_ms
    try:
        clock.fastest_ms = saved / 2  # as if the reference had once run twice as fast
        after = clock.measure(ref, rounds=10)["host_ms"]
    finally:
        clock.fastest_ms = saved
    assert 0.35 < after / before < 0.7, (before, after)


def test_export_of_best_on_a_multi_objective_study_names_its_pareto_front(tmp_path):
    """It said 'no single best trial (A single best trial cannot be retrieved from a multi-objective study.
    Consider using Study.best_trials ...); pass --trial N' without saying which trials are the candidates."""
    import optuna

    from ecg_automl.tflite import TFLiteError
    from ecg_automl.tflite.export import export_trial
    from search import open_study

    storage = f"sqlite:///{tmp_path / 'o.db'}"
    study, _ = open_study("moo", storage, tiny_settings(tmp_path, objectives=["quality", "latency", "size"]))
    for values in ([0.7, 0.9, 12.0], [0.6, 0.5, 9.0], [0.5, 0.95, 13.0]):  # the third is dominated
        study.add_trial(optuna.trial.create_trial(values=values))
    with pytest.raises(TFLiteError, match=r"Pareto front, trials 0 \(f1 0.7, latency ms 0.9, size KB 12\), "
                                          r"1 \(f1 0.6, latency ms 0.5, size KB 9\); pass --trial N"):
        export_trial("moo", storage, "best", "int8", tmp_path / "m.tflite")


def test_exporting_a_trial_off_the_pareto_front_names_a_trial_that_dominates_it(tmp_path, capsys):
    """`export --trial N` of a dominated trial of a multi-objective study went without a word that another trial
    is as good or better on every objective."""
    import optuna

    from ecg_automl.tflite.export import _dominating_trial, export_trial
    from search import open_study

    storage = f"sqlite:///{tmp_path / 'o.db'}"
    study, _ = open_study("moo", storage, tiny_settings(tmp_path, objectives=["quality", "latency", "size"]))
    for values in ([0.7, 0.9, 12.0], [0.6, 0.5, 9.0], [0.5, 0.95, 13.0], [0.7, 0.9, 12.0]):
        study.add_trial(optuna.trial.create_trial(values=values))
    trials = study.trials
    assert _dominating_trial(study, trials[2]).number == 0
    assert _dominating_trial(study, trials[0]) is None and _dominating_trial(study, trials[1]) is None
    assert _dominating_trial(study, trials[3]) is None  # equal to trial 0 on every objective: on the front too
    with pytest.raises(KeyError):  # the note comes before the export (these trials hold no model to export)
        export_trial("moo", storage, "2", "int8", tmp_path / "m.tflite")
    assert ("note: trial 2 (f1 0.5, latency ms 0.95, size KB 13) is not on study 'moo''s Pareto front: trial 0 (f1 "
            "0.7, latency ms 0.9, size KB 12) is as good or better on every objective") in capsys.readouterr().err
    single, _ = open_study("one", storage, tiny_settings(tmp_path))
    single.add_trial(optuna.trial.create_trial(value=0.5))
    assert _dominating_trial(single, single.trials[0]) is None


def test_the_pareto_report_says_what_its_columns_are_and_how_to_export_one(tmp_path):
    """The end-of-run table had columns 'quality', 'latency' and 'size' with no unit or source, and no word
    on how to export a trial of the front."""
    import optuna

    from search import open_study
    from search.study import report_pareto

    study, _ = open_study("moo", f"sqlite:///{tmp_path / 'o.db'}",
                          tiny_settings(tmp_path, objectives=["quality", "latency", "size"]))
    study.add_trial(optuna.trial.create_trial(values=[0.7, 0.9, 12.0]))
    lines: list[str] = []
    report_pareto(study, None, lines.append)
    assert "(quality: validation f1; latency: ms per beat, Raspberry Pi 4 estimate, int8; size: KB" in lines[0]
    # the command runs as printed: export needs --out, and the study's storage when it is not the default one
    # (it printed `ecg-automl export --study moo --trial N`, which export refuses for want of --out)
    assert "`ecg-automl export --study moo --no-mlflow --trial N --retrain --mode int8 --out trial-N.tflite`" in lines[0]
    assert "size: KB of the int8 TFLite file of the untrained model" in lines[0]  # 15.3 KB listed, 16.3 exported
    lines.clear()
    report_pareto(study, None, lines.append, storage=f"sqlite:///{tmp_path / 'o.db'}")
    command = lines[0].split("retrained on all search patients with `")[1].split("`")[0]
    assert command == f"ecg-automl export --study moo --storage sqlite:///{tmp_path / 'o.db'} --no-mlflow --trial N " \
                      f"--retrain --mode int8 --out trial-N.tflite"
    import argparse

    from ecg_automl.tflite.export import add_export_parser

    parser = argparse.ArgumentParser()
    add_export_parser(parser.add_subparsers())
    args = parser.parse_args(command.replace("--trial N", "--trial 0").split()[1:])
    assert (args.trial, args.mode, args.storage, args.retrain) == ("0", "int8", f"sqlite:///{tmp_path / 'o.db'}", True)
    # a study logged to another experiment: export refused the printed command ("logs to MLflow experiment 'my exp',
    # not 'ecg-automl'"); with the defaults' store and experiment, no MLflow option is needed
    from search import Tracker, TrackingConfig

    lines.clear()
    default = TrackingConfig.load()
    report_pareto(study, Tracker(TrackingConfig(default.tracking_uri, None, "my exp")), lines.append)
    assert "`ecg-automl export --study moo --experiment 'my exp' --trial N --retrain" in lines[0]
    lines.clear()
    report_pareto(study, Tracker(default), lines.append)
    assert "`ecg-automl export --study moo --trial N --retrain" in lines[0]
    empty, _ = open_study("empty", f"sqlite:///{tmp_path / 'o.db'}",
                          tiny_settings(tmp_path, objectives=["quality", "latency"]))
    lines.clear()
    report_pareto(empty, None, lines.append)
    assert "no Pareto-optimal trial yet" in lines[0] and "ecg-automl export" not in lines[0]


def test_the_pareto_table_shows_each_figure_once_and_a_bench_server_s_p90(tmp_path):
    """Its rows held the latency objective and pi4_estimate_ms, the size objective and size_kb: the same numbers
    twice, in a 14-character column each; a bench-server study's p90 was not in them at all."""
    import optuna

    from search import open_study
    from search.pareto import pareto_table

    study, _ = open_study("pt", f"sqlite:///{tmp_path / 'o.db'}",
                          tiny_settings(tmp_path, objectives=["quality", "latency", "size"]))
    timed = {"host_ms": 0.05, "host_median_ms": 0.06, "host_p90_ms": 0.07, "params": 900, "macs": 5000}
    study.add_trial(optuna.trial.create_trial(values=[0.7, 0.4, 12.0], user_attrs={
        **timed, "pi4_estimate_ms": 0.4, "latency_ms": 0.4, "size_kb": 12.0}))
    study.add_trial(optuna.trial.create_trial(values=[0.6, 0.3, 11.0], user_attrs={
        **timed, "device_median_ms": 0.3, "device_p90_ms": 0.35, "latency_ms": 0.3, "size_kb": 11.0}))
    rows = pareto_table(study)
    assert rows == [{"trial": 0, "quality": 0.7, "latency": 0.4, "size": 12.0, **timed},
                    {"trial": 1, "quality": 0.6, "latency": 0.3, "size": 11.0, **timed, "device_p90_ms": 0.35}]


def test_multi_objective_study_has_a_pareto_front(tmp_path):
    storage = f"sqlite:///{tmp_path / 'o.db'}"
    result = run_search("moo", tiny_settings(tmp_path, objectives=["quality", "latency", "size"]), n_trials=3,
                        storage=storage, tracking=tracking(tmp_path), progress=False, print_fn=lambda s: None)
    study = result.study
    assert len(study.directions) == 3 and len(study.best_trials) >= 1
    for t in study.best_trials:
        quality, latency, size = t.values
        assert 0 <= quality <= 1 and latency > 0 and size > 0
    tracker = Tracker(tracking(tmp_path))
    arts = {a.path for a in tracker.client.list_artifacts(study.user_attrs["mlflow_parent_run_id"])}
    assert {"pareto_front.json", "pareto_front.png"} <= arts


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_bench_server_stopped_with_ctrl_c_exits_130(tmp_path, cli_env):
    """Ctrl-C ended bench-server with exit 0, as if it had finished, where `ui` and every other command stopped so
    exit 130."""
    import signal

    port = _free_port()
    # as from a terminal: a pytest-xdist worker ignores SIGINT, and a child inherits that (Python then installs no
    # KeyboardInterrupt for it, as POSIX has background jobs ignore Ctrl-C)
    proc = subprocess.Popen([sys.executable, "-m", "ecg_automl", "bench-server", "--port", str(port)], cwd=tmp_path,
                            env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read()
                break
            except OSError:
                time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "bench-server stopped" in err and "Traceback" not in err, err[-2000:]


def test_bench_server_times_a_real_model_and_rejects_garbage(exported, tmp_path, cli_env):
    _, _, out = exported
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "ecg_automl", "bench-server", "--port", str(port), "--max-mb", "1"],
                            cwd=tmp_path, env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(60):
            try:
                health = json.loads(urllib.request.urlopen(f"{url}/health", timeout=2).read())
                break
            except OSError:
                time.sleep(0.5)
        assert health["ok"]
        from ecg_automl.tflite.bench_server import remote_latency

        res = remote_latency(url, out["int8"][0].read_bytes(), runs=30)
        assert res["median_ms"] > 0 and res["n_runs"] == 30 and res["threads"] == 1

        def post(body: bytes) -> int:
            req = urllib.request.Request(f"{url}/benchmark", data=body, method="POST")
            try:
                return urllib.request.urlopen(req, timeout=30).status
            except urllib.error.HTTPError as exc:
                return exc.code

        assert post(b"garbage that is no flatbuffer") == 415
        assert post(b"\0\0\0\0TFL3" + b"\0" * 64) == 422  # identifier right, model broken
        assert post(b"\0\0\0\0TFL3" + b"\0" * (2 * 1024 * 1024)) == 413
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_threshold_above_the_int8_output_ceiling_is_called_out(exported, data_root, tmp_path, cli_env):
    """An int8 sigmoid output has 256 levels and tops out at 255/256; a validation-chosen threshold of 0.999
    (seen with 8-epoch models, benchmarks/fold_ensemble.py) would silently flag no beat. Export's check and
    `predict` must say so instead of reporting "no abnormal beat found"."""
    import shutil

    import numpy as np

    from ecg_automl.tflite import TFLiteModel
    from ecg_automl.tflite.verify import format_verification, verify

    _, _, out = exported
    int8_path, fp32_path = out["int8"][0], out["fp32"][0]
    ceiling = TFLiteModel(int8_path).output_max
    assert ceiling == pytest.approx(255 / 256, abs=1e-6)
    assert TFLiteModel(fp32_path).output_max == float("inf")
    assert out["int8"][1]["verification"]["output_max"] == pytest.approx(ceiling)
    assert out["int8"][1]["verification"]["threshold_unreachable"] is None  # the study's own threshold is fine

    y = np.array([0, 1, 1, 0])
    v = verify(np.array([0.1, 0.9995, 0.9992, 0.2]), np.array([0.1, ceiling, ceiling, 0.2]), y, 0.999, "int8", ceiling)
    assert v["flagged"] and "flags no beat" in v["threshold_unreachable"] and v["tflite"]["f1"] == 0.0
    assert "WARNING: the decision threshold 0.9990 is above" in format_verification(v)

    model = tmp_path / "high.tflite"
    shutil.copy(int8_path, model)
    side = json.loads(int8_path.with_suffix(".json").read_text())
    model.with_suffix(".json").write_text(json.dumps({**side, "threshold": 0.999}))
    proc = run_cli(["predict", model, "--record", data_root / "mitdb" / "100", "--annotations", "atr", "--json"],
                   tmp_path, cli_env)
    summary = json.loads(proc.stdout)["summary"]
    assert summary["abnormal_beats"] == 0 and summary["verdict"].startswith("unknown")
    assert "above the largest probability this int8 model can output (0.9961" in summary["warning"]
    # on stderr too, as predict's other warnings: a script reading --json or the exit code did not hear of it
    assert f"warning: {data_root / 'mitdb' / '100'}: the decision threshold 0.9990 is above" in proc.stderr, (
        proc.stderr[-2000:])
    text = run_cli(["predict", model, "--record", data_root / "mitdb" / "100", "--annotations", "atr"],
                   tmp_path, cli_env).stdout
    assert "WARNING: the decision threshold 0.9990" in text and "no abnormal beat found" not in text


# --------------------------------------------------------------------------------------------
# predict as a new user meets it: untrained fp32 models (no training: the checks are about which samples
# reach the model and what the user is told, not about the model's quality)
# --------------------------------------------------------------------------------------------
#: TINY with every choice fixed and no RR input, so the model also takes a CSV of isolated beats.
UNTRAINED = {**{k: v for k, v in TINY.items() if not isinstance(v, dict)}, "input_length": 128, "conv_filters": 8,
             "learning_rate": 0.001, "rr_features": False}
PTBXL_LEADS = ["I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6"]


@pytest.fixture(scope="module")
def untrained(tmp_path_factory):
    """name -> .tflite path: ``mitdb`` (one lead, MLII), ``ptbxl`` (12 leads, named in the sidecar),
    ``ptbxl-old`` (12 leads, a sidecar without ``leads``, as written before they were recorded); and
    ``keras``: the one-lead model saved as .keras."""
    from ecg_automl.tflite.convert import convert
    from ecg_automl.tflite.export import dataset_leads
    from ecg_automl.tflite.sidecar import write_sidecar
    from spaces import build_model

    tmp = tmp_path_factory.mktemp("untrained")
    out = {}
    for name, dataset, channels in (("mitdb", "mitdb", 1), ("ptbxl", "ptbxl", 12), ("ptbxl-old", "ptbxl", 12),
                                    ("heartbeat", "heartbeat-csv", 1)):
        model = build_model(UNTRAINED, channels=channels, compile_model=False)
        path = tmp / f"{name}.tflite"
        path.write_bytes(convert(model, UNTRAINED, "fp32"))
        meta = {"dataset": dataset, "fs": 180.0, "window": 192,
                "lead": {"mitdb": "MLII", "ptbxl": "II"}.get(dataset, "first"),
                "channels": channels, "input_length": 128, "rr_features": False, "threshold": 0.5,
                "filter": {"low": 0.5, "high": 40.0}}
        if name != "ptbxl-old":
            meta["leads"] = dataset_leads(dataset, channels)
        write_sidecar(path, meta)
        out[name] = path
        if name == "mitdb":
            out["keras"] = tmp / "mitdb.keras"
            model.save(out["keras"])
    return out


def test_the_sidecar_names_the_leads_of_each_dataset():
    from ecg_automl.tflite.export import dataset_leads

    assert dataset_leads("mitdb", 1) == ["MLII"]
    assert dataset_leads("ptbxl", 12) == PTBXL_LEADS
    assert dataset_leads("ptbxl", 1) is None and dataset_leads("heartbeat-csv", 1) is None


def test_a_12_lead_model_reads_its_12_leads_or_says_which_are_missing(untrained, ptbxl_root, tmp_path, cli_env):
    record = ptbxl_root / "ptbxl" / "records100" / "00000" / "00001_lr"
    proc = run_cli(["predict", untrained["ptbxl"], "--record", record, "--json"], tmp_path, cli_env)
    summary = json.loads(proc.stdout)["summary"]
    assert summary["lead"] == ",".join(PTBXL_LEADS) and 5 <= summary["beats"] <= 15, summary
    # a model of records' diagnoses judges the record by its beats' mean probability: "abnormal beats present" for
    # any one beat over the threshold called NORM records abnormal, and said nothing of what the labels meant
    decision = "abnormal" if summary["mean_probability"] >= summary["threshold"] else "normal"
    assert summary["record_decision"] == decision
    assert summary["verdict"].startswith(f"{decision} record: its beats' mean p(abnormal) "
                                         f"{summary['mean_probability']:.3f} is ")
    text = run_cli(["predict", untrained["ptbxl"], "--record", record], tmp_path, cli_env).stdout
    assert (f"{summary['abnormal_beats']} over the threshold" in text and f": {decision} record: " in text
            and "(the model learned records' diagnoses, 1 = abnormal record" in text), text[-1500:]
    # a two-lead MIT-BIH record: one line naming the leads needed and the record's
    proc = run_cli(["predict", untrained["ptbxl"], "--record", ptbxl_root / "mitdb" / "100"], tmp_path, cli_env,
                   check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "the model needs 12 leads (I, II, III," in proc.stderr and "the record has 2 (MLII, V5)" in proc.stderr
    # a sidecar written before the leads were recorded: re-export, not a shape error
    proc = run_cli(["predict", untrained["ptbxl-old"], "--record", record], tmp_path, cli_env, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "the model takes 12 leads, but its sidecar (ptbxl-old.json) does not name them" in proc.stderr


def test_an_mlii_model_reads_lead_ii_of_a_12_lead_record(untrained, cinc_root, tmp_path, cli_env):
    """A 12-lead record (CinC-2021, WFDB in .mat files, 500 Hz) has no MLII: an MLII model read lead I, the
    record's first, although lead II is the standard lead MLII modifies. It now reads II and says so."""
    record = cinc_root / "cinc2021_sample" / "E07500"
    proc = run_cli(["predict", untrained["mitdb"], "--record", record, "--json"], tmp_path, cli_env)
    summary = json.loads(proc.stdout)["summary"]
    assert summary["lead"] == "II" and 5 <= summary["beats"] <= 15, summary
    text = run_cli(["predict", untrained["mitdb"], "--record", record], tmp_path, cli_env).stdout
    assert "which " in text and "lead II, its closest counterpart (the same limb-lead axis" in text, text[-1500:]


def test_predict_says_when_it_reads_another_lead_and_which_beats_it_skipped(untrained, data_root, tmp_path, cli_env):
    """Record 102 (paced) has no MLII: an MLII model reads V5 and says so, and of its 2,187 annotated beats
    only the 103 that are not AAMI class Q are classified: the output says what happened to the others. The
    record may be named with its .dat extension."""
    args = ["predict", untrained["mitdb"], "--record", f"{data_root / 'mitdb' / '102'}.dat", "--annotations", "atr"]
    text = run_cli(args, tmp_path, cli_env).stdout
    assert "WARNING: the model was trained on lead MLII, which" in text and "lead V5 was used instead" in text
    assert ("note: 2084 beats were not classified: 2028 paced (/), 56 fusion of paced and normal (f) beats are "
            "AAMI class Q, which the model is not trained on") in text, text[-1500:]
    summary = json.loads(run_cli([*args, "--json"], tmp_path, cli_env).stdout)["summary"]
    assert summary["beats"] == 103 and summary["skipped_beats"]["count"] == 2084 and summary["lead"] == "V5"
    assert "lead_warning" in summary
    # a record with the model's lead: no warning
    text = run_cli(["predict", untrained["mitdb"], "--record", data_root / "mitdb" / "100"], tmp_path, cli_env).stdout
    assert "WARNING" not in text


def test_the_note_on_skipped_beats_counts_one_beat_in_the_singular():
    """A 10 s CinC record with one beat too near its end read "1 beats were not classified: 1 are too close"."""
    import numpy as np

    from ecg_automl.tflite.predict import _skipped_note, _skipped_text

    assert _skipped_text(_skipped_note(None, np.zeros(0, bool), 1)) == (
        "1 beat was not classified: 1 is too close to the record's start or end for a full window")
    note = _skipped_note(np.array(["/", "N"]), np.array([True, False]), 2)
    assert _skipped_text(note) == ("3 beats were not classified: 1 paced (/) beat is AAMI class Q, which the model "
                                   "is not trained on; 2 are too close to the record's start or end for a full window")


def test_predict_reads_the_lead_named_by_lead(untrained, data_root, tmp_path, cli_env):
    """A device's record names its lead "ECG1": an MLII model read the first lead with a warning and no way to
    choose. --lead names the record's lead to read (any case); another lead than the model's is still called out,
    and a lead the record lacks, a CSV or a multi-lead model are refused with one line."""
    import numpy as np

    from ecg_automl.tflite.convert import TFLiteError
    from ecg_automl.tflite.predict import _record_leads, predict_record

    device = tmp_path / "device"
    device.mkdir()
    for ext in ("dat", "atr"):
        shutil.copy(data_root / "mitdb" / f"100.{ext}", device / f"100.{ext}")
    header = (data_root / "mitdb" / "100.hea").read_text()
    (device / "100.hea").write_text(header.replace(" MLII", " ECG1").replace(" V5", " ECG2"))
    model = untrained["mitdb"]
    original = predict_record(model, data_root / "mitdb" / "100")
    guessed = predict_record(model, device / "100")  # no MLII, no II: the first lead, with a warning
    assert guessed.summary["lead"] == "ECG1" and "lead ECG1 was used instead" in guessed.summary["lead_warning"]
    chosen = predict_record(model, device / "100", lead="ecg1")
    assert chosen.summary["lead"] == "ECG1" and "read as asked (--lead)" in chosen.summary["lead_warning"]
    np.testing.assert_array_equal(chosen.prob, original.prob)  # the same signal as 100's MLII
    v5 = predict_record(model, data_root / "mitdb" / "100", lead="V5")
    assert v5.summary["lead"] == "V5" and "lead V5 was read as asked" in v5.summary["lead_warning"]
    assert not np.array_equal(v5.prob[:50], original.prob[:50])
    assert "lead_warning" not in predict_record(model, data_root / "mitdb" / "100", lead="mlii").summary
    # lead II for an MLII model: the same axis, still another lead, said as without --lead; a model that names no
    # lead of its own ("first") reads the one asked for without a word
    assert _record_leads({"lead": "MLII"}, "m.tflite", ["II", "V1"], 1, Path("r"), lead="ii")[1] == (
        "the model was trained on lead MLII; lead II was read as asked (--lead), its closest counterpart (the same "
        "limb-lead axis, other electrode placement), so the predictions may differ from those on MLII")
    assert _record_leads({"lead": "first"}, "m.tflite", ["CH1", "CH2"], 1, Path("r"), lead="ch2") == ([1], None)
    with pytest.raises(TFLiteError, match="--lead picks the one lead of a one-lead model, but this model takes 12"):
        _record_leads({"lead": "II", "leads": PTBXL_LEADS}, "m.tflite", PTBXL_LEADS, 12, Path("r"), lead="II")

    for args, message in (
            (["--record", device / "100", "--lead", "II"], "100: it has no lead II (leads: ECG1, ECG2)"),
            (["--csv", tmp_path / "rows.csv", "--lead", "II"], "--lead picks a record's lead, so it applies to "
                                                              "--record only"),
            (["--record", device / "100", "--lead", " "], "--lead is empty")):
        proc = run_cli(["predict", model, *args], tmp_path, cli_env, check=False)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr and message in proc.stderr, proc.stderr[-1500:]
    proc = run_cli(["predict", model, "--record", device / "100", "--lead", "ECG1", "--json"], tmp_path, cli_env)
    assert json.loads(proc.stdout)["summary"]["lead"] == "ECG1" and "read as asked (--lead)" in proc.stderr


def test_predict_csv_rows_must_be_the_models_window(untrained, tmp_path, cli_env):
    import numpy as np

    model = untrained["mitdb"]
    rng = np.random.default_rng(0)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    short = tmp_path / "short.csv"
    np.savetxt(short, rng.normal(size=(3, 100)), delimiter=",")
    at360 = tmp_path / "at360.csv"  # a 192-sample window at 180 Hz is 384 samples at 360 Hz
    np.savetxt(at360, rng.normal(size=(3, 384)), delimiter=",")
    for csv, message in ((empty, "empty.csv: no beats"),
                         (short, "rows hold 100 samples, but the model takes beats of 192 samples at 180 Hz"),
                         (at360, "384 samples is the model's window at 360 Hz: if that is the CSV's rate, "
                                 "pass --csv-fs 360")):
        proc = run_cli(["predict", model, "--csv", csv], tmp_path, cli_env, check=False)
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    summary = json.loads(run_cli(["predict", model, "--csv", at360, "--csv-fs", "360", "--json"], tmp_path,
                                 cli_env).stdout)["summary"]
    assert summary["beats"] == 3
    labelled = tmp_path / "labelled.csv"
    np.savetxt(labelled, np.c_[rng.normal(size=(4, 192)), [0, 1, 0, 1]], delimiter=",")
    text = run_cli(["predict", model, "--csv", labelled, "--csv-has-label"], tmp_path, cli_env).stdout
    assert "against the CSV's labels: accuracy" in text and "record's annotations" not in text
    assert "(labelled abnormal)" in text


def test_predict_refuses_csv_rows_with_nan_or_inf(untrained, tmp_path, cli_env):
    """NaN and inf in a CSV row were classified (an all-NaN row came out abnormal), and a NaN label counted as
    abnormal: both are refused, naming the first such line (from 1, blank and comment lines counted)."""
    import numpy as np

    rows = np.random.default_rng(0).normal(size=(5, 192))
    rows[2, :] = np.nan
    rows[4, 7] = np.inf
    csv = tmp_path / "nan.csv"
    csv.write_text("# beats\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n")
    proc = run_cli(["predict", untrained["mitdb"], "--csv", csv], tmp_path, cli_env, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "nan.csv, line 4, column 1: nan is not a finite number; 2 of 5 rows hold NaN or inf values" in proc.stderr
    labelled = tmp_path / "labelled.csv"
    np.savetxt(labelled, np.c_[rows[:2], [0, np.nan]], delimiter=",")
    proc = run_cli(["predict", untrained["mitdb"], "--csv", labelled, "--csv-has-label"], tmp_path, cli_env,
                   check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "labelled.csv, line 2: label nan is not a finite number" in proc.stderr


def test_a_malformed_csv_is_named_by_its_line(untrained, tmp_path, cli_env):
    """numpy's parse errors counted rows from 0, skipping comment and blank lines ("at row 3"), and told the user
    to "use `usecols`": the first bad line is now named as `data info` names it, from 1."""
    good, short, bad = ",".join(["0.1"] * 192), ",".join(["0.1"] * 100), ",".join(["abc"] + ["0.1"] * 191)
    for text, message in ((f"# beats\n\n{good}\n{good}\n{good}\n{bad}\n", "line 6, column 1: 'abc' is not a number"),
                          (f"{good}\n{good}\n{short}\n", "line 3: 100 columns, the lines above have 192"),
                          (f"{good}\n1_0,{good[4:]}\n", "line 2, column 1: '1_0' is not a number")):  # float() takes it
        csv = tmp_path / "bad.csv"
        csv.write_text(text)
        proc = run_cli(["predict", untrained["mitdb"], "--csv", csv], tmp_path, cli_env, check=False)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert f"bad.csv, {message}" in proc.stderr and "usecols" not in proc.stderr, proc.stderr[-2000:]


def test_csv_fs_takes_the_rates_data_info_takes(tmp_path, cli_env):
    """--csv-fs had no bounds: 0.001 resampled for hours, 1e9 ended in a scipy traceback. It takes what `data info
    --fs` takes, 50-1000 Hz, with the same words, as a usage error before the model is opened."""
    expected = "is out of range, expected a sampling rate in Hz in [50, 1000]"
    proc = run_cli(["data", "info", "mitdb", "--fs", "2000"], tmp_path, cli_env, check=False)
    assert proc.returncode == 2 and f"--fs: 2000.0 {expected}" in proc.stderr, proc.stderr[-2000:]
    for value in ("0.001", "1e9", "nan"):
        proc = run_cli(["predict", "model.tflite", "--csv", "beats.csv", "--csv-fs", value], tmp_path, cli_env,
                       check=False)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert f"argument --csv-fs: {float(value)!r} {expected}" in proc.stderr, proc.stderr[-2000:]


def test_predict_refuses_an_empty_record_and_csv_options_with_a_record(untrained, data_root, tmp_path, cli_env):
    """`--record ""` fell through to the CSV path ("None: not a numeric CSV of beats"), and --csv-fs and
    --csv-has-label were silently ignored with --record, as --annotations and --strict (no signal checks on CSV rows)
    were with --csv: all usage errors."""
    record = data_root / "mitdb" / "100"
    (tmp_path / "beats.csv").write_text(",".join(["0"] * 192) + "\n")
    for args, message in ((["--record", ""], "--record is empty"),
                          (["--csv", tmp_path / "beats.csv", "--annotations", "atr"],
                           "--annotations reads a record's annotation file, so it applies to --record only"),
                          (["--csv", tmp_path / "beats.csv", "--strict"],
                           "CSV rows get no signal checks, so it applies to --record only"),
                          (["--record", record, "--csv-fs", "360"], "--csv-fs applies to --csv only, not --record"),
                          (["--record", record, "--csv-has-label"], "--csv-has-label applies to --csv only")):
        proc = run_cli(["predict", untrained["mitdb"], *args], tmp_path, cli_env, check=False)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert message in proc.stderr, proc.stderr[-2000:]


def test_predict_refuses_a_record_shorter_than_a_window_an_annotation_path_and_an_unwritable_plot(
        untrained, data_root, tmp_path, cli_env):
    """Each was a traceback: a record of 1-400 samples failed in scipy's filter ("must be greater than padlen"),
    --annotations given the file's path in wfdb ("Invalid name"), --plot below a file after the whole prediction;
    an empty --annotations quietly used the QRS detector instead."""
    import wfdb

    rec = wfdb.rdrecord(str(data_root / "mitdb" / "100"), sampto=50)
    wfdb.wrsamp("short", fs=360, units=["mV", "mV"], sig_name=rec.sig_name, p_signal=rec.p_signal, fmt=["16", "16"],
                write_dir=str(tmp_path))
    (tmp_path / "afile").write_text("")
    record = data_root / "mitdb" / "100"
    for args, message in ((["--record", tmp_path / "short"], "short: 50 samples (0.14 s), shorter than one beat "
                                                             "window of this model (1.07 s): no beat can be classified"),
                          (["--record", record, "--annotations", f"{record}.atr"],
                           "give the annotation file's extension, e.g. --annotations atr"),
                          (["--record", record, "--annotations", " "], "--annotations is empty"),
                          (["--record", record, "--plot", tmp_path / "afile" / "x.png"],
                           f"cannot be written ({tmp_path / 'afile'} is a file, not a folder)")):
        proc = run_cli(["predict", untrained["mitdb"], *args], tmp_path, cli_env, check=False)
        assert proc.returncode in (1, 2) and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert message in proc.stderr, proc.stderr[-2000:]
        assert not proc.stdout.strip(), proc.stdout[-2000:]  # refused before any beat was classified


def test_predict_refuses_a_header_row_of_column_numbers_and_labels_that_are_no_class(untrained, tmp_path, cli_env):
    """pandas' to_csv header (0, 1, ..., 187) was classified as a beat, of class 187 with --csv-has-label, where
    training's reader refuses that file; a label of -1 or 0.5 counted as abnormal."""
    import numpy as np

    rng = np.random.default_rng(0)
    rows = np.c_[rng.normal(size=(3, 187)), [0, 1, 0]]
    header = tmp_path / "header.csv"
    np.savetxt(header, np.r_[[np.arange(188)], rows], delimiter=",")
    odd = tmp_path / "odd.csv"
    np.savetxt(odd, np.c_[rows[:, :-1], [0, -1, 0.5]], delimiter=",")
    for csv, message in ((header, "header.csv, line 1: 0, 1, 2, ..., 187 is a header row of column numbers, not a "
                                  "beat: remove it"),
                         (odd, "odd.csv, line 2: label -1 is not a whole number >= 0")):
        proc = run_cli(["predict", untrained["heartbeat"], "--csv", csv, "--csv-has-label"], tmp_path, cli_env,
                       check=False)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert message in proc.stderr, proc.stderr[-2000:]
    # rows much shorter than the window at their stated rate: classified, but mostly zeros, which is said
    short = tmp_path / "short.csv"
    np.savetxt(short, rng.normal(size=(2, 64)), delimiter=",")
    proc = run_cli(["predict", untrained["mitdb"], "--csv", short, "--csv-fs", "180"], tmp_path, cli_env)
    assert (f"warning: {short}: each row holds 64 samples at 180 Hz (0.36 s), 50 % of the 0.71 s the model reads: "
            "the rest was zero-padded") in proc.stderr, proc.stderr[-2000:]
    # rows covering all the model reads (its centred 128 of the 192-sample window) are not zero-padded where it reads,
    # but training z-scored each beat over all 192 samples: said too (30 % more beats flagged on MIT-BIH 213 at 128
    # samples went unmentioned)
    covering = tmp_path / "covering.csv"
    np.savetxt(covering, rng.normal(size=(2, 130)), delimiter=",")
    proc = run_cli(["predict", untrained["mitdb"], "--csv", covering, "--csv-fs", "180"], tmp_path, cli_env)
    assert "zero-padded" not in proc.stderr + proc.stdout, proc.stderr[-2000:]
    assert (f"warning: {covering}: each row holds 130 samples at 180 Hz (0.72 s), less than the 1.07 s window over "
            "which training z-scored each beat") in proc.stderr, proc.stderr[-2000:]
    whole = tmp_path / "whole.csv"
    np.savetxt(whole, rng.normal(size=(2, 192)), delimiter=",")
    proc = run_cli(["predict", untrained["mitdb"], "--csv", whole, "--csv-fs", "180"], tmp_path, cli_env)
    assert "warning" not in proc.stderr.lower(), proc.stderr[-2000:]


def test_predict_reads_a_csv_that_begins_with_a_byte_order_mark(untrained, tmp_path, cli_env):
    """A CSV saved by Excel begins with a UTF-8 byte-order mark: predict refused it ("'\ufeff0.1' is not a number")
    where the search's reader (pandas) takes it."""
    import numpy as np

    plain, excel = tmp_path / "plain.csv", tmp_path / "excel.csv"
    np.savetxt(plain, np.random.default_rng(0).normal(size=(2, 130)), delimiter=",")
    excel.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
    beats = [json.loads(run_cli(["predict", untrained["mitdb"], "--csv", f, "--csv-fs", "180", "--json"],
                                tmp_path, cli_env).stdout)["beats"] for f in (plain, excel)]
    assert beats[0] == beats[1] and len(beats[0]) == 2


def test_a_heartbeat_csv_model_reads_rows_of_its_own_layout(untrained, tmp_path, cli_env):
    """A model searched on heartbeat CSVs (187 samples at 125 Hz per row) was refused its own test file unless the
    user knew to pass --csv-fs 125, and a row with its class column still on was read as a 188th sample (with
    --csv-fs 125 too: then the rows were centre-cropped, their R peak cut off, without a word)."""
    import numpy as np

    from ecg_automl.tflite.export import _CLASS_MEANING
    from ecg_data import SOURCES

    rng = np.random.default_rng(0)
    rows = np.c_[rng.normal(size=(4, 187)), [0, 1, 2, 0]]
    kaggle = tmp_path / "mitbih_test.csv"
    np.savetxt(kaggle, rows, delimiter=",")
    summary = json.loads(run_cli(["predict", untrained["heartbeat"], "--csv", kaggle, "--csv-has-label", "--json"],
                                 tmp_path, cli_env).stdout)["summary"]
    assert summary["beats"] == 4, summary
    # the search's own CSV (its sidecar lists it among search_records) is called out
    heartbeat_side = untrained["heartbeat"].with_suffix(".json")
    saved = heartbeat_side.read_text()
    heartbeat_side.write_text(json.dumps({**json.loads(saved), "search_records": ["mitbih_test"]}))
    try:
        summary = json.loads(run_cli(["predict", untrained["heartbeat"], "--csv", kaggle, "--csv-has-label", "--json"],
                                     tmp_path, cli_env).stdout)["summary"]
    finally:
        heartbeat_side.write_text(saved)
    assert "a record named mitbih_test is one of the 1 heartbeat-csv records" in summary["seen_in_training"]
    for rate in ([], ["--csv-fs", "125"]):  # the layout's rate given: it was read as 188 samples, without a word
        proc = run_cli(["predict", untrained["heartbeat"], "--csv", kaggle, *rate], tmp_path, cli_env, check=False)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, (rate, proc.stderr[-2000:])
        assert "trained on heartbeat-CSV rows of 187 samples at 125 Hz; if the last column is each beat's class" in (
            proc.stderr), rate
    # another model: a row one sample longer than its window points at the label column
    labelled = tmp_path / "labelled.csv"
    np.savetxt(labelled, np.c_[rng.normal(size=(2, 192)), [0, 1]], delimiter=",")
    proc = run_cli(["predict", untrained["mitdb"], "--csv", labelled], tmp_path, cli_env, check=False)
    assert proc.returncode == 2 and "if the last column is each beat's label, pass --csv-has-label" in proc.stderr
    # the sidecar's class meaning is the source's, not MIT-BIH's AAMI classes for every model
    assert set(_CLASS_MEANING) == set(SOURCES) and "NORM" in _CLASS_MEANING["ptbxl"]["0"]


def test_csv_rows_at_another_rate_make_the_windows_the_model_was_trained_on(data_root):
    """--csv-fs: a heartbeat-CSV model's rows at another rate than 125 Hz went to the centre crop, which cut off the
    R peak each row begins at (the windows' median correlation with the 125 Hz rows' was -0.06); and any model's rows
    were resampled one at a time with zeros beyond their ends, which pulled both ends towards 0 (up to 1.2 z-units
    off the record's own windows, 34 of 300 decisions changed on MIT-BIH 213)."""
    import numpy as np
    import wfdb

    from ecg_automl.tflite.predict import _csv_windows
    from ecg_data import heartbeat_csv
    from ecg_data.preprocess import bandpass, normalise, resample, resampled_positions

    rng = np.random.default_rng(0)
    t = np.arange(heartbeat_csv.N_SAMPLES) / heartbeat_csv.FS_IN  # heartbeat rows: the R peak first, then the beat
    rows = np.exp(-t / 0.01) - 0.3 * np.exp(-((t - 0.3) / 0.05) ** 2) + 0.02 * rng.normal(size=(20, t.size))
    meta = {"dataset": "heartbeat-csv", "fs": 180.0, "window": 256}
    at125, _ = _csv_windows(rows, meta, heartbeat_csv.FS_IN)
    at250, covered = _csv_windows(resample(rows.T, 125, 250).T, meta, 250.0)
    assert covered == 256 and np.argmax(at250[:, :, 0], axis=1).tolist() == [128] * 20  # the R peak at the centre
    assert min(np.corrcoef(a[:, 0], b[:, 0])[0, 1] for a, b in zip(at125, at250)) > 0.99

    record = str(data_root / "mitdb" / "213")
    x = bandpass(wfdb.rdrecord(record, channels=[0]).p_signal, 360.0)[:, 0]
    at180 = resample(x, 360, 180)
    beats = np.array([s for s in wfdb.rdann(record, "atr").sample if s % 2 == 0 and 300 < s < len(x) - 300])[:300]
    centres = resampled_positions(beats, 360, 180)
    own = normalise(np.array([at180[c - 96:c + 96] for c in centres])[:, :, None])  # the record path's windows
    rows360, _ = _csv_windows(np.array([x[s - 192:s + 192] for s in beats]), {"fs": 180.0, "window": 192}, 360.0)
    assert np.abs(rows360 - own).max() < 0.1  # 1.24 with zeros beyond the rows' ends
    # a one-sample row (a signal written one value per line) at another rate: SciPy's "antireflect" killed the
    # process with SIGFPE; it is a row of padding, which predict warns about
    assert _csv_windows(np.ones((3, 1)), {"fs": 180.0, "window": 192}, 360.0)[1] == 1
    # a heartbeat model's short rows are padding after the beat: said (their windows were all "covered")
    assert _csv_windows(rows[:, :40], meta, heartbeat_csv.FS_IN)[1] == 128 + 58


def test_a_heartbeat_csv_model_says_it_was_never_filtered_and_predict_warns_on_a_record(data_root, tmp_path, cli_env):
    """A heartbeat-CSV model's sidecar named the 0.5-40 Hz band-pass of the record sources, which ecg-automl never
    applied to its rows (the CSV's maker preprocessed them): its ``filter`` is now null, with a note saying why.
    predict still band-passes a record 0.5-40 Hz for it (its baseline wander must go), but warns once, on stderr and
    in the summary, that the record's beats are not what the model was trained and tested on; its own CSV rows are
    its intended input and get no warning."""
    import shutil

    import numpy as np
    from test_sources import _beat_rows, _write_csv

    from ecg_automl.tflite import export_model, format_prediction, predict_record
    from ecg_automl.tflite.sidecar import write_sidecar
    from ecg_data import read_heartbeat_csv
    from search.training import fit

    folder = tmp_path / "heartbeat"
    folder.mkdir()
    _write_csv(folder / "mitbih_train.csv", _beat_rows(200, [0, 0, 1, 2], 0), [f"p{i % 8}" for i in range(200)])
    _write_csv(folder / "mitbih_test.csv", _beat_rows(40, [0, 2], 1), [f"q{i % 2}" for i in range(40)])
    data = read_heartbeat_csv(folder, fs=180.0, window=192)
    model = fit(UNTRAINED, data.search_part(), None, seed=0).model
    out = tmp_path / "hb.tflite"
    meta = export_model(model, UNTRAINED, data, out, mode="fp32", threshold=0.5, verify_beats=0, runs=10)
    side = json.loads(out.with_suffix(".json").read_text())
    assert meta["filter"] is None and side["filter"] is None, side.get("filter")
    assert "ecg-automl applied no filter: the heartbeat-CSV rows come preprocessed by the CSV's maker" in (
        side["filter_note"])

    record = data_root / "mitdb" / "100"
    pred = predict_record(out, record)
    warning = pred.summary["preprocessing_warning"]
    assert warning.startswith("this model was trained on heartbeat-CSV rows, whose preprocessing (filtering "
                              "included) was the CSV maker's, not ecg-automl's; this record's beats were band-pass "
                              "filtered 0.5-40 Hz"), warning
    assert f"WARNING: {warning}" in format_prediction(pred)
    # the record is band-passed as a sidecar naming 0.5-40 Hz has it (an older export of the same model)
    older = tmp_path / "older.tflite"
    shutil.copy(out, older)
    write_sidecar(older, {**{k: v for k, v in side.items() if k not in ("format", "sha256", "filter_note")},
                          "filter": {"low": 0.5, "high": 40.0, "type": "butterworth-3"}})
    before = predict_record(older, record)
    np.testing.assert_array_equal(before.prob, pred.prob)
    assert before.summary["preprocessing_warning"] == warning  # an older heartbeat-CSV sidecar is warned about too
    # the CLI: once on stderr, and in the --json summary; not a signal check, so --strict does not exit on it
    proc = run_cli(["predict", out, "--record", record, "--json", "--strict"], tmp_path, cli_env, check=False)
    assert proc.stderr.count("this model was trained on heartbeat-CSV rows") == 1, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["summary"]["preprocessing_warning"] == warning
    assert proc.returncode == (1 if json.loads(proc.stdout)["summary"].get("quality_warnings") else 0)
    # CSV rows of its own layout: what it was trained on, no warning
    proc = run_cli(["predict", out, "--csv", folder / "mitbih_test.csv", "--csv-has-label", "--json"], tmp_path,
                   cli_env)
    assert "preprocessing_warning" not in json.loads(proc.stdout)["summary"]
    assert "heartbeat-CSV rows" not in proc.stderr, proc.stderr[-2000:]


def test_predict_on_a_keras_model_says_what_it_takes(untrained, data_root, tmp_path, cli_env):
    proc = run_cli(["predict", untrained["keras"], "--record", data_root / "mitdb" / "100"], tmp_path, cli_env,
                   check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "predict takes a .tflite written by `ecg-automl export`" in proc.stderr
    assert "sidecar not found" not in proc.stderr


def test_predict_bridges_missing_samples_and_says_so(untrained, data_root, tmp_path, cli_env):
    """A record with a short lead-off gap (100 NaN samples in 60 s) gave "no beats found": wfdb's XQRS
    detector finds nothing in a signal holding one NaN. The gap is now interpolated before detection (as the
    band-pass filter already did) and the output counts the missing samples."""
    import numpy as np
    import wfdb

    rec = wfdb.rdrecord(str(data_root / "mitdb" / "100"), sampto=360 * 60)
    sig = rec.p_signal.copy()
    clean = tmp_path / "clean"
    wfdb.wrsamp("clean", fs=360, units=["mV", "mV"], sig_name=rec.sig_name, p_signal=sig, fmt=["16", "16"],
                write_dir=str(tmp_path))
    sig[5000:5100, 0] = np.nan
    wfdb.wrsamp("gap", fs=360, units=["mV", "mV"], sig_name=rec.sig_name, p_signal=sig, fmt=["16", "16"],
                write_dir=str(tmp_path))
    base = json.loads(run_cli(["predict", untrained["mitdb"], "--record", clean, "--json"], tmp_path,
                              cli_env).stdout)["summary"]
    proc = run_cli(["predict", untrained["mitdb"], "--record", tmp_path / "gap", "--json"], tmp_path, cli_env,
                   check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout)["summary"]
    assert abs(summary["beats"] - base["beats"]) <= 1 and summary["missing_samples"] == 100, summary
    assert "missing_samples" not in base
    text = run_cli(["predict", untrained["mitdb"], "--record", tmp_path / "gap"], tmp_path, cli_env).stdout
    assert "note: 100 samples of the leads read are missing (NaN); they were interpolated" in text
    # the text output, not only --json, says where the beats came from
    assert "\n  beats at: R peaks found by wfdb's XQRS detector (no annotations read)\n" in text, text[-800:]
    text = run_cli(["predict", untrained["mitdb"], "--record", data_root / "mitdb" / "100", "--annotations", "atr"],
                   tmp_path, cli_env).stdout
    assert "\n  beats at: the R peaks of the annotations (atr)\n" in text, text[-800:]


def test_predict_refuses_a_lead_that_holds_no_sample(untrained, data_root, tmp_path, cli_env):
    """A record whose model lead is missing from end to end gave "no beats found (lead MLII)" with a numpy warning,
    and with its annotations classified every beat as an all-zero window: "no abnormal beat found"."""
    import numpy as np
    import wfdb

    rec = wfdb.rdrecord(str(data_root / "mitdb" / "100"), sampto=360 * 20)
    ann = wfdb.rdann(str(data_root / "mitdb" / "100"), "atr", sampto=360 * 20)
    sig = rec.p_signal.copy()
    sig[:, 0] = np.nan
    wfdb.wrsamp("empty", fs=360, units=["mV", "mV"], sig_name=rec.sig_name, p_signal=sig, fmt=["16", "16"],
                adc_gain=[200, 200], baseline=[0, 0], write_dir=str(tmp_path))  # NaN as WFDB's missing value
    wfdb.wrann("empty", "atr", ann.sample, ann.symbol, write_dir=str(tmp_path))
    for more in ([], ["--annotations", "atr"]):
        proc = run_cli(["predict", untrained["mitdb"], "--record", tmp_path / "empty", *more], tmp_path, cli_env,
                       check=False)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, (more, proc.stderr[-2000:])
        assert "empty: lead MLII holds no sample (every value is missing)" in proc.stderr, (more, proc.stderr[-2000:])


def test_a_cinc_record_may_be_named_by_its_mat_file(untrained, cinc_root, tmp_path, cli_env):
    """A CinC-2021 record is E07500.hea + E07500.mat: naming it by its .mat file (as .dat is for MIT-BIH) gave
    "E07500.mat.hea: header file not found"."""
    record = cinc_root / "cinc2021_sample" / "E07500.mat"
    summary = json.loads(run_cli(["predict", untrained["mitdb"], "--record", record, "--json"], tmp_path,
                                 cli_env).stdout)["summary"]
    assert summary["lead"] == "II" and summary["beats"] > 0


def test_predict_refuses_a_sidecar_of_another_model(untrained, data_root, tmp_path, cli_env):
    """A sidecar copied beside another model was obeyed: with the same input shapes, silently (another model's
    threshold and lead), and with other shapes as a ValueError traceback. The sidecar now records the model's
    SHA-256 and predict refuses a mismatch; an older sidecar without it is checked against the model's inputs."""
    import shutil

    model = tmp_path / "copy.tflite"
    shutil.copy(untrained["mitdb"], model)
    shutil.copy(untrained["heartbeat"].with_suffix(".json"), model.with_suffix(".json"))
    record = data_root / "mitdb" / "100"
    proc = run_cli(["predict", model, "--record", record], tmp_path, cli_env, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "its sidecar copy.json belongs to another model" in proc.stderr
    meta = json.loads(untrained["mitdb"].with_suffix(".json").read_text())
    del meta["sha256"]  # as written before the hash was recorded
    model.with_suffix(".json").write_text(json.dumps({**meta, "input_length": 192}))
    proc = run_cli(["predict", model, "--record", record], tmp_path, cli_env, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "describes another model (the model reads 128 samples, the sidecar says 192)" in proc.stderr
    model.with_suffix(".json").write_text(json.dumps(meta))  # its own inputs, no hash: accepted
    assert json.loads(run_cli(["predict", model, "--record", record, "--json"], tmp_path,
                              cli_env).stdout)["summary"]["beats"] > 2000


def test_a_tflite_model_of_another_kind_is_named_as_such_not_a_traceback(untrained, data_root, tmp_path, cli_env):
    """A valid .tflite with two outputs (not an ecg-automl classifier) under an ecg-automl sidecar was a ValueError
    traceback from reading the model, before the sidecar's SHA-256 named it as another model."""
    import shutil

    import keras
    import tensorflow as tf

    from ecg_automl.tflite import TFLiteError, TFLiteModel

    ecg = keras.Input((128, 1), name="ecg")
    flat = keras.layers.Flatten()(ecg)
    two = tmp_path / "two.tflite"
    two.write_bytes(tf.lite.TFLiteConverter.from_keras_model(
        keras.Model(ecg, [keras.layers.Dense(1)(flat), keras.layers.Dense(2)(flat)])).convert())
    with pytest.raises(TFLiteError, match=r"two\.tflite: not an ecg-automl beat classifier \(it has 2 output tensors"):
        TFLiteModel(two)
    shutil.copy(untrained["mitdb"].with_suffix(".json"), two.with_suffix(".json"))
    proc = run_cli(["predict", two, "--record", data_root / "mitdb" / "100"], tmp_path, cli_env, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "its sidecar two.json belongs to another model" in proc.stderr, proc.stderr[-2000:]


def test_a_hand_edited_sidecar_value_is_named(untrained, data_root, tmp_path, cli_env):
    """A sidecar with a value of the wrong type or range gave a ValueError or TypeError traceback (fs "abc",
    threshold null, a window shorter than the model's input): one line now names the key, its value and what
    it must be."""
    import shutil

    from ecg_data import PIPELINE_VERSION

    model = tmp_path / "edited.tflite"
    shutil.copy(untrained["mitdb"], model)
    meta = json.loads(untrained["mitdb"].with_suffix(".json").read_text())
    assert meta["pipeline_version"] == PIPELINE_VERSION and meta["format"] == "ecg-automl/tflite-1"
    for key, value, message in (("fs", "abc", 'fs is "abc", expected a sampling rate in Hz in [50, 1000]'),
                                ("threshold", None, "threshold is null, expected a probability from 0 to 1"),
                                ("window", 10, "window is 10, expected an integer >= 16"),
                                ("window", 64, "input_length is 128, expected an integer from 1 to window (64)"),
                                ("filter", "butterworth", 'filter is "butterworth", expected {"low": HZ, "high": HZ} '
                                 'with 0 < low < high, or null (no filter in training)'),
                                # a sidecar of another version, or beats prepared otherwise, were obeyed silently
                                ("format", "ecg-automl/tflite-2", 'format "ecg-automl/tflite-2", but this ecg-automl '
                                 "reads ecg-automl/tflite-1: the model was exported by another version"),
                                ("pipeline_version", 99, "the model was trained on beats prepared by pipeline version "
                                 f"99, but this ecg-automl prepares them by version {PIPELINE_VERSION}"),
                                ("normalisation", "min-max", 'normalisation is "min-max", but this ecg-automl prepares '
                                 'beats by "per-window z-score" only')):
        model.with_suffix(".json").write_text(json.dumps({**meta, key: value}))
        proc = run_cli(["predict", model, "--record", data_root / "mitdb" / "100"], tmp_path, cli_env, check=False)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert f"edited.json: {message}" in proc.stderr, proc.stderr[-2000:]


def test_a_sidecar_saved_with_a_byte_order_mark_or_not_as_utf8_is_read_or_named(untrained, tmp_path):
    """A sidecar an editor saved with a byte-order mark (Windows Notepad) was refused as "not valid JSON", and one
    that is not UTF-8 text gave a UnicodeDecodeError traceback."""
    import shutil

    from ecg_automl.tflite.convert import TFLiteError
    from ecg_automl.tflite.sidecar import read_sidecar

    model = tmp_path / "bom.tflite"
    shutil.copy(untrained["mitdb"], model)
    text = untrained["mitdb"].with_suffix(".json").read_text()
    model.with_suffix(".json").write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert read_sidecar(model) == json.loads(text)
    model.with_suffix(".json").write_bytes(text.encode("utf-16"))
    with pytest.raises(TFLiteError, match=r"bom\.json: not a UTF-8 text file, so not a sidecar `ecg-automl export` "
                                          r"wrote \(invalid start byte at byte 0\)"):
        read_sidecar(model)


def test_a_sidecar_filter_the_record_rate_cannot_take_is_named(untrained, data_root, tmp_path, cli_env):
    """The band-pass runs at the record's own rate, its high cut-off capped at 0.45 x that rate (as in training):
    a hand-edited filter.low at or above the cap (170 Hz; MIT-BIH's 360 Hz caps at 162) was scipy's traceback
    "Wn[0] must be less than Wn[1]" after the beats were found. One line names the key, its value and the rate;
    a high cut-off above the record's Nyquist frequency is capped, as before, and predicts."""
    import shutil

    model = tmp_path / "band.tflite"
    shutil.copy(untrained["mitdb"], model)
    meta = json.loads(untrained["mitdb"].with_suffix(".json").read_text())
    record = data_root / "mitdb" / "100"
    model.with_suffix(".json").write_text(json.dumps({**meta, "filter": {"low": 170, "high": 400}}))
    proc = run_cli(["predict", model, "--record", record], tmp_path, cli_env, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert (f"band.json: filter.low is 170 Hz, but {record} is sampled at 360 Hz, where the band-pass stops at "
            f"162 Hz (0.45 x the rate)") in proc.stderr, proc.stderr[-2000:]
    model.with_suffix(".json").write_text(json.dumps({**meta, "filter": {"low": 0.5, "high": 400}}))
    assert json.loads(run_cli(["predict", model, "--record", record, "--json"], tmp_path,
                              cli_env).stdout)["summary"]["beats"] > 2000


def test_a_re_export_replaces_the_model_and_its_sidecar_together(exported, tmp_path, cli_env, monkeypatch):
    """Export wrote the .tflite first and its sidecar last: a re-export that stopped in between (Ctrl-C during
    the verification or the timing, a failure there) left the new model beside the old sidecar, whose threshold
    and inputs predict then used. Both are now written at the end, together, and the CLI says what it replaced."""
    import hashlib

    import ecg_automl.tflite.export as export

    tmp, storage, out = exported
    path = out["fp32"][0]
    before = path.read_bytes(), path.with_suffix(".json").read_text()
    assert json.loads(before[1])["sha256"] == hashlib.sha256(before[0]).hexdigest()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(export, "verify", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export.export_trial("ex", storage, "best", "int8", path, verify_beats=200, runs=10)
    assert (path.read_bytes(), path.with_suffix(".json").read_text()) == before
    assert sorted(p.name for p in tmp.glob(".*")) == []  # no temporary file left behind
    monkeypatch.undo()
    proc = run_cli(["export", "--study", "ex", "--storage", storage, "--mode", "fp32", "--out", path,
                    "--verify-beats", "200", "--runs", "10", "--no-mlflow"], tmp_path, cli_env)
    assert "replacing the earlier export there and its sidecar" in proc.stdout, proc.stdout
    side = json.loads(path.with_suffix(".json").read_text())
    assert side["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest() and side["verification"]["beats"] == 200


@pytest.mark.parametrize("stage", ["model", "sidecar"])
def test_a_write_that_fails_leaves_the_earlier_export_and_no_hidden_file(tmp_path, monkeypatch, stage):
    """A full disk while the model or its sidecar was written left a hidden .NAME.tflite.partial (and its .json)
    beside the earlier export, on every failed try."""
    import errno

    from ecg_automl.tflite import sidecar

    path = tmp_path / "m.tflite"
    sidecar.write_model(path, b"earlier model", {"threshold": 0.5})
    before = path.read_bytes(), path.with_suffix(".json").read_text()
    real_write = Path.write_bytes if stage == "model" else Path.write_text

    def disk_full(self, data, *args, **kwargs):
        real_write(self, data[: len(data) // 2], *args, **kwargs)  # half of it written, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes" if stage == "model" else "write_text", disk_full)
    with pytest.raises(OSError, match="No space left"):
        sidecar.write_model(path, b"a new model", {"threshold": 0.7})
    monkeypatch.undo()
    assert (path.read_bytes(), path.with_suffix(".json").read_text()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.tflite"]


def test_predict_counts_the_beats_an_int8_model_clips(exported, data_root, tmp_path, cli_env):
    """An int8 model's inputs hold a fixed range, set on 500 calibration beats: the long pauses of record 232
    give RR features beyond it, which quantisation clipped without a word. predict now counts those beats;
    a float model reads them as they are."""
    _, _, out = exported
    args = ["--record", data_root / "mitdb" / "232", "--annotations", "atr"]
    int8 = json.loads(run_cli(["predict", out["int8"][0], *args, "--json"], tmp_path, cli_env).stdout)["summary"]
    assert 0 < int8["clipped_inputs"]["rr"] < int8["beats"], int8
    fp32 = json.loads(run_cli(["predict", out["fp32"][0], *args, "--json"], tmp_path, cli_env).stdout)["summary"]
    assert "clipped_inputs" not in fp32
    text = run_cli(["predict", out["int8"][0], *args], tmp_path, cli_env).stdout
    assert (f"note: {int8['clipped_inputs']['rr']} beats have RR-interval features (long pauses, say) outside what "
            f"the int8 model's 'rr' input can hold") in text, text[-1500:]


def test_predict_warns_on_a_record_the_model_was_trained_on(exported, untrained, data_root, tmp_path, cli_env):
    """predict --annotations on a DS1 record (208, one the search trained on) printed its accuracy against the
    annotations like any other, an optimistic figure for a product whose point is unseen patients. The sidecar
    now lists the search's records and predict warns; a held-out record (213) gets no warning."""
    _, _, out = exported
    side = json.loads(out["int8"][0].with_suffix(".json").read_text())
    assert side["search_records"] == ["101", "106", "119", "208", "223"]
    args = ["predict", out["int8"][0], "--annotations", "atr", "--record"]
    text = run_cli([*args, data_root / "mitdb" / "208"], tmp_path, cli_env).stdout
    assert ("WARNING: a record named 208 is one of the 5 mitdb records whose patients this model was trained on"
            in text), text[-1500:]
    assert "seen_in_training" not in json.loads(run_cli([*args, data_root / "mitdb" / "213", "--json"], tmp_path,
                                                        cli_env).stdout)["summary"]
    # a script reading --json hears of it on stderr too, as of the signal checks' warnings
    seen = run_cli([*args, data_root / "mitdb" / "208", "--json"], tmp_path, cli_env)
    assert "a record named 208 is one of the 5 mitdb records" in json.loads(seen.stdout)["summary"]["seen_in_training"]
    assert "warning: " in seen.stderr and "a record named 208 is one of the 5 mitdb records" in seen.stderr, seen.stderr
    # a PTB-XL file name is matched by its ecg_id
    from ecg_automl.tflite.predict import _seen_record_warning
    from pathlib import Path

    assert _seen_record_warning({"dataset": "ptbxl", "search_records": ["1", "7"]}, Path("records100/00000/00001_lr"))
    assert not _seen_record_warning({"dataset": "ptbxl", "search_records": ["1", "7"]}, Path("00010_lr"))
    # ... and only for a PTB-XL model: PTB-XL's 00101_lr is not MIT-BIH's record 101
    assert not _seen_record_warning({"dataset": "mitdb", "search_records": ["101"]}, Path("00101_lr"))
    # PTB Diagnostic's records are named with their patient's folder
    assert _seen_record_warning({"dataset": "ptbdb", "search_records": ["patient001/s0010_re"]},
                                Path("ptbdb/patient001/s0010_re"))
    # DS2's 202 is DS1's 201: one man, one tape (it got no warning)
    ds1 = {"dataset": "mitdb", "search_records": ["101", "201"]}
    assert "202 is of the same patient as MIT-BIH record 201" in _seen_record_warning(ds1, Path("mitdb/202"))
    assert not _seen_record_warning(ds1, Path("mitdb/203"))


def test_predict_and_bench_server_say_when_litert_is_missing(untrained, data_root, tmp_path, cli_env):
    """Without LiteRT (a Pi set up without ecg-automl[pi]) predict died with a ModuleNotFoundError traceback,
    and bench-server started, answered /health and then failed every benchmark as "LiteRT could not run the
    model". Both now stop with one line that says what to install."""
    block = "import sys; sys.modules['ai_edge_litert'] = None\nfrom ecg_automl.cli import main\n"
    for args in (["predict", str(untrained["mitdb"]), "--record", str(data_root / "mitdb" / "100")],
                 ["bench-server", "--port", "0"]):
        proc = subprocess.run([sys.executable, "-c", f"{block}sys.exit(main({args!r}))"], cwd=tmp_path, env=cli_env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, (args, proc.stderr[-2000:])
        assert "the TFLite runtime LiteRT cannot be imported" in proc.stderr
        assert ('pip install -e ".[pi]" in the ecg-automl checkout' in proc.stderr  # not on PyPI
                and "or just pip install ai-edge-litert" in proc.stderr), proc.stderr


def test_verification_flags_an_f1_loss_in_every_mode():
    """Only int8 was flagged for losing F1 against Keras: a dynamic-range export (the fastest here) or an fp16
    one that lost a third of its F1 passed silently, and `--strict` let it through."""
    import numpy as np

    from ecg_automl.tflite.verify import format_verification, verify

    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    keras = np.array([0.1, 0.2, 0.1, 0.3, 0.9, 0.8, 0.7, 0.9])
    worse = np.array([0.1, 0.2, 0.1, 0.3, 0.9, 0.8, 0.4, 0.4])  # two abnormal beats lost: F1 1.0 -> 0.67
    for mode in ("fp32", "dynamic", "fp16", "int8"):
        v = verify(keras, worse, y, 0.5, mode)
        assert v["flagged"] and v["f1_drop"] > 0.3, (mode, v)
        assert f"WARNING: the {mode} model's F1 is 33.3 points below the Keras model's" in format_verification(v)
        assert not verify(keras, keras, y, 0.5, mode)["flagged"]


def test_verification_flags_an_f1_loss_just_over_one_point():
    """The tolerance is 1 F1 point: a 2-point loss is flagged and a half-point one is not (a tolerance loosened to
    10 points still flagged the 33-point loss above)."""
    import numpy as np

    from ecg_automl.tflite.verify import verify

    y = np.r_[np.zeros(200, int), np.ones(100, int)]
    keras = np.r_[np.full(200, 0.1), np.full(100, 0.9)]  # F1 1.0
    for lost, flagged in ((4, True), (1, False)):  # F1 0.980 (2.0 points) and 0.995 (0.5 points)
        tflite = keras.copy()
        tflite[200:200 + lost] = 0.4
        v = verify(keras, tflite, y, 0.5, "int8")
        assert v["flagged"] is flagged and v["f1_drop"] == pytest.approx(1 - 2 * (100 - lost) / (200 - lost)), lost


def test_verification_flags_an_export_that_ranks_nothing():
    """An int8 file whose outputs all quantised to one value (a trial threshold of 8.9e-06, under the int8 step)
    had ROC-AUC 0.500 against Keras' 0.960, with the same F1 both ways, and was not flagged."""
    import numpy as np

    from ecg_automl.tflite.verify import format_verification, verify

    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    keras = np.array([0.1, 0.2, 0.1, 0.3, 0.9, 0.8, 0.7, 0.9])
    v = verify(keras, np.full(8, 0.5), y, 1e-5, "int8")
    assert v["f1_drop"] == 0 and v["auc_drop"] == 0.5 and v["flagged"]
    assert ("WARNING: the int8 model's ROC-AUC is 0.500 below the Keras model's (more than 0.02): it ranks the beats "
            "worse; its outputs take only 1 distinct value(s) on these beats") in format_verification(v)
    assert not verify(keras, keras * 0.99, y, 0.5, "int8")["flagged"]


def test_verification_flags_many_changed_decisions_and_an_fp32_file_that_is_not_the_model():
    """A conversion that moves beats across the threshold both ways keeps F1 and ROC-AUC close and was not flagged,
    nor was an fp32 file whose probabilities were 0.01 off (a float32 conversion agrees to about 1e-6)."""
    import numpy as np

    from ecg_automl.tflite.verify import verify

    y = np.r_[np.zeros(500, int), np.ones(500, int)]
    # 40 of each class on each side of the threshold; the file swaps them: as many errors, on other beats
    keras = np.r_[np.full(420, 0.1), np.full(40, 0.45), np.full(40, 0.55),
                  np.full(420, 0.9), np.full(40, 0.45), np.full(40, 0.55)]
    swapped = keras.copy()
    swapped[keras == 0.45], swapped[keras == 0.55] = 0.55, 0.45
    v = verify(keras, swapped, y, 0.5, "int8")
    assert v["f1_drop"] == 0 and abs(v["auc_drop"]) <= 0.02 and v["decision_agreement"] == 0.84 and v["flagged"], v
    assert any("otherwise than the Keras model" in r for r in v["flag_reasons"])
    off = np.clip(keras + 0.01, 0, 1)
    assert verify(keras, off, y, 0.5, "fp32")["flagged"] and not verify(keras, off, y, 0.5, "fp16")["flagged"]
    assert not verify(keras, keras + 1e-6, y, 0.5, "fp32")["flagged"]


@pytest.mark.parametrize("strict, code", [(False, 0), (True, 1)])
def test_export_strict_fails_a_flagged_export(monkeypatch, capsys, strict, code):
    """`ecg-automl export --strict` exits 1 when the verification flags the export (an F1 drop over a point), for a
    pipeline that must not ship such a model; without --strict it warns and exits 0. Nothing tested the exit code."""
    import numpy as np

    from ecg_automl.cli import _load_extras, build_parser
    from ecg_automl.tflite import export as export_mod
    from ecg_automl.tflite.verify import verify

    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    keras = np.array([0.1, 0.2, 0.1, 0.3, 0.9, 0.8, 0.7, 0.9])
    worse = np.array([0.1, 0.2, 0.1, 0.3, 0.9, 0.8, 0.4, 0.4])
    meta = {"size_kb": 10.0, "trial": 0, "model_origin": "final model", "ops": ["FULLY_CONNECTED"], "params": 1,
            "macs": 1, "io": {"inputs": {}, "output": {}}, "verification": verify(keras, worse, y, 0.5, "fp32"),
            "latency": {"threads": 1, "n_runs": 1, "median_ms": 0.1, "p90_ms": 0.1, "host_slowdown": 1.0,
                        "host_ms": 0.1, "pi4_estimate_ms": 0.5}}
    def export_trial(*args, strict=False, **kwargs):
        if strict:
            raise export_mod.ExportFlagged("m.tflite", meta)
        return meta

    monkeypatch.setattr(export_mod, "export_trial", export_trial)
    _load_extras()
    argv = ["export", "--study", "s", "--mode", "fp32", "--out", "m.tflite", "--no-mlflow"] + (["--strict"] if strict else [])
    args = build_parser().parse_args(argv)
    assert export_mod.cmd_export(args) == code
    out = capsys.readouterr()
    assert "warning: the fp32 model's F1 is 33.3 points below the Keras model's" in out.err
    assert ("did not write m.tflite (--strict" if strict else "wrote m.tflite") in out.out


def test_a_strict_export_the_check_flags_writes_nothing_and_predict_warns_of_a_flagged_file(exported, tmp_path,
                                                                                            data_root):
    """`export --strict` exited 1 but had already written the flagged file over the last good export; and predict
    used a file whose export was flagged without a word."""
    import keras

    from ecg_automl.tflite import ExportFlagged, predict_record
    from ecg_automl.tflite.export import export_model
    from search import load_study_data, open_study
    from spaces import SearchSpace

    _, storage, out = exported
    study, settings = open_study("ex", storage, None, heartbeat=None)
    final = study.user_attrs["final"]
    config = study.trials[final["trial"]].user_attrs["config"]
    data = load_study_data(settings, SearchSpace.from_yaml(settings.space_yaml))
    model = keras.models.load_model(final["model_path"], compile=False)
    target = tmp_path / "m.tflite"
    shutil.copy(out["fp32"][0], target)
    shutil.copy(out["fp32"][0].with_suffix(".json"), target.with_suffix(".json"))
    before = (target.read_bytes(), target.with_suffix(".json").read_text())
    with pytest.raises(ExportFlagged, match=r"m\.tflite not written \(strict\): the decision threshold 0\.9990") as err:
        export_model(model, config, data, target, mode="int8", threshold=0.999, verify_beats=300, runs=10, strict=True)
    assert err.value.meta["verification"]["flagged"] and err.value.meta["mode"] == "int8"
    assert (target.read_bytes(), target.with_suffix(".json").read_text()) == before
    # without --strict it is written, flagged in its sidecar, and predict says so
    side = target.with_suffix(".json")
    meta = json.loads(side.read_text())
    meta["verification"] = {**meta["verification"], "flagged": True,
                            "flag_reasons": ["the fp32 model's F1 is 3.0 points below the Keras model's"]}
    side.write_text(json.dumps(meta))
    pred = predict_record(target, data_root / "mitdb" / "213")
    assert pred.summary["export_warning"] == ("its export check flagged this file: the fp32 model's F1 is 3.0 points "
                                              "below the Keras model's")


def test_export_refuses_a_final_model_file_another_study_replaced(exported, capsys):
    """Two studies of one name (two storages) with one --out-dir save their final models at the same path: the
    later replaced the other's, and `export` of the other shipped it under that study's config and threshold (F1
    0.00 against 0.37 in the review). The study records its file's SHA-256: a replaced or damaged file is said,
    and the copy on the study's MLflow run exported instead."""
    from ecg_automl.tflite.export import export_trial
    from search import final_model_problem, open_study
    from spaces import build_model

    tmp, storage, _ = exported
    study, _ = open_study("ex", storage, None, heartbeat=None)
    final = study.user_attrs["final"]
    path = Path(final["model_path"])
    assert final_model_problem(final) is None and len(final["model_sha256"]) == 64
    own = path.read_bytes()
    try:
        build_model(UNTRAINED, channels=1).save(path)  # another study's model, at this study's path
        assert final_model_problem(final).startswith("was replaced since its search saved it")
        meta = export_trial("ex", storage, "best", "fp32", tmp / "replaced.tflite", tracking=tracking(tmp),
                            verify_beats=300, runs=10)
        err = capsys.readouterr().err
        run_id = study.user_attrs["mlflow_parent_run_id"]
        assert (f"note: study 'ex''s final model file {path} was replaced since its search saved it" in err
                and f"exporting the copy logged to its MLflow run {run_id}" in err), err
        assert meta["model_origin"].endswith(f"from MLflow run {run_id}") and meta["trial"] == final["trial"]
        assert meta["threshold"] == pytest.approx(final["abnormal"]["threshold"])
    finally:
        path.write_bytes(own)


@pytest.mark.parametrize("damage, why", [
    ("replaced", "was replaced since its search saved it (another study of the same name, in another storage"),
    ("damaged", "cannot be read as a Keras model (damaged? Keras says: "),
])
def test_export_says_why_the_final_model_file_is_not_exported(monkeypatch, capsys, tmp_path, damage, why):
    """A damaged final model file was a traceback saying "File not found" (the file was there); one another study
    had replaced was exported as this study's. Without MLflow to fetch the study's copy from, the trial's own model
    is exported, for --trial best and for --trial N of the final model's trial alike, and the warning says why."""
    path = tmp_path / "final-trial2.keras"
    path.write_bytes(b"PK\x03\x04 a zip cut short")
    final = {"trial": 2, "model_path": str(path)}
    if damage == "replaced":
        final["model_sha256"] = "0" * 64
    for best in (True, False):
        model, origin, threshold = _fake_trial_model_call(monkeypatch, final, {}, best=best)
        err = capsys.readouterr().err
        assert model == "retrained" and threshold == 0.375 and "Traceback" not in err
        assert f"warning: the final model of study 's', {path}, {why}" in err, err
        assert f"exporting {'best ' if best else ''}trial 2's own model instead (retrained)" in err


def _fake_trial_model_call(monkeypatch, final, user_attrs, tracker=None, best=True, study_attrs=None, retrain=False):
    """Run export's _trial_model on a study/trial stand-in, with the retraining replaced by a stub."""
    from types import SimpleNamespace

    from ecg_automl.tflite.export import _trial_model
    from search import training

    monkeypatch.setattr(training, "fit", lambda config, train, val, seed: SimpleNamespace(model="retrained"))
    study = SimpleNamespace(study_name="s", user_attrs={**({"final": final} if final else {}), **(study_attrs or {})})
    trial = SimpleNamespace(number=2, user_attrs={"config": {}, "threshold": 0.375, **user_attrs})
    data = SimpleNamespace(search_part=lambda: None)
    return _trial_model(study, trial, SimpleNamespace(seed=1), data, tracker, best=best, retrain=retrain)


@pytest.mark.parametrize("final, why", [
    (None, "study 's' has no final model (its search ran with --no-final, or stopped before the final test)"),
    ({"trial": 2, "model_path": "/nowhere/runs/s/final-trial2.keras"},
     "the final model of study 's', /nowhere/runs/s/final-trial2.keras, is gone (moved or deleted)"),
    ({"trial": 1, "model_path": "/nowhere/runs/s/final-trial1.keras"},
     "the final model of study 's' is of trial 1, but its best trial is now 2"),
])
def test_export_best_without_a_final_model_says_so_and_what_it_exports(monkeypatch, capsys, final, why):
    """`--trial best` means the study's final model; without one it silently exported the best trial's own
    model at the trial's threshold."""
    model, origin, threshold = _fake_trial_model_call(monkeypatch, final, {})
    err = capsys.readouterr().err
    assert model == "retrained" and threshold == 0.375
    warning = next(line for line in err.splitlines() if line.startswith("warning:"))
    assert why in warning
    assert "exporting best trial 2's own model instead (retrained), at its validation threshold 0.375" in warning
    assert "rerun the search command (with no --no-final): it resumes the study and makes the final model" in warning
    _fake_trial_model_call(monkeypatch, final, {}, best=False)  # --trial 2 asks for the trial's own model
    err = capsys.readouterr().err
    if final and final["trial"] == 2:  # but its final model's file is gone: that is said (it was not)
        assert f"warning: {why}: exporting trial 2's own model instead (retrained)" in err
    else:
        assert "warning" not in err


def test_export_best_while_a_search_makes_the_final_model_says_so(monkeypatch, capsys):
    """`--trial best` while the search was still training the final model exported the trial's own model with
    "has no final model (its search ran with --no-final, or stopped before the final test)", and told the user to
    rerun the search, which would have trained a second final model beside the first."""
    import os
    import socket

    from ecg_automl.tflite import TFLiteError
    from search.final_marker import FINAL_IN_PROGRESS

    since = time.time() - 60
    here = {"trial": 2, "worker": f"{socket.gethostname()}:{os.getpid()}", "since": since}
    elsewhere = {**here, "worker": "other-host:4242"}
    for marker, unseen in ((here, False), (elsewhere, True)):
        with pytest.raises(TFLiteError) as err:
            _fake_trial_model_call(monkeypatch, None, {}, best=True, study_attrs={FINAL_IN_PROGRESS: marker})
        msg = str(err.value)
        assert (f"study 's''s final model (of trial 2) is being made by its search {marker['worker']} since "
                f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(since))}") in msg
        assert msg.endswith("export --trial best when that search has ended, or --trial 2 for the trial's own "
                            "model now")
        assert ("cannot be seen from here" in msg) == unseen
    # another trial's final model in the making, or --trial 2: the trial's own model, as before
    _fake_trial_model_call(monkeypatch, None, {}, best=True, study_attrs={FINAL_IN_PROGRESS: {**here, "trial": 1}})
    assert _fake_trial_model_call(monkeypatch, None, {}, best=False, study_attrs={FINAL_IN_PROGRESS: here})[0] == (
        "retrained")
    # its search died on this host, and no sync or search has cleared the marker yet: said as a stopped search
    dead = {**here, "worker": f"{socket.gethostname()}:{_a_free_pid()}"}
    capsys.readouterr()
    _fake_trial_model_call(monkeypatch, None, {}, best=True, study_attrs={FINAL_IN_PROGRESS: dead})
    assert f"its search, {dead['worker']}, was stopped while making it on" in capsys.readouterr().err


def _a_free_pid() -> int:
    """A pid no process has now."""
    import os

    pid = 4_000_000
    while os.path.exists(f"/proc/{pid}"):
        pid -= 1
    return pid


def test_an_older_keras_tuner_trial_is_retrained_without_asking_mlflow(monkeypatch, capsys):
    """A KerasTuner trial recorded before its runs held a model (no ``model_in_mlflow``): export warned "could not
    fetch trial N's model from MLflow (Failed to download artifacts...)" before retraining it. (A newer one's model
    is fetched: tests/test_search.py::test_keras_tuner_engine_on_the_same_space.)"""
    from types import SimpleNamespace

    asked = []

    def download(*args):
        asked.append(args)
        raise OSError("Failed to download artifacts from path 'model/model.keras'")

    tracker = SimpleNamespace(client=SimpleNamespace(download_artifacts=download))
    model, origin, _ = _fake_trial_model_call(
        monkeypatch, None, {"keras_tuner.trial_id": "0001", "mlflow_run_id": "abc"}, tracker=tracker, best=False)
    assert model == "retrained" and origin.startswith("retrained (seed 1") and asked == []
    err = capsys.readouterr().err
    assert "retraining trial 2 on all search patients (a KerasTuner trial of an older version stores no model) ..." in err
    assert "could not fetch" not in err and "warning" not in err.lower()
    # a newer one whose model did not reach its run (it could not be saved) says so: not asked for either
    model, origin, _ = _fake_trial_model_call(
        monkeypatch, None, {"keras_tuner.trial_id": "0001", "mlflow_run_id": "abc", "model_in_mlflow": False},
        tracker=tracker, best=False)
    assert model == "retrained" and asked == []
    assert "retraining trial 2 on all search patients (its model is not stored) ..." in capsys.readouterr().err


def test_export_retrain_says_what_it_exports_and_why_it_retrains(monkeypatch, capsys):
    """`--trial N --retrain` of a study whose final model of N averages 2 fold models exported one refit model at the
    trial's threshold, while its help called that "what a search's final model is"; `--no-mlflow` retrained a trial
    whose model MLflow held, saying "its model is not stored"."""
    final = {"trial": 2, "model_path": "/nowhere/final-trial2.keras", "members": 2, "final_model": "folds",
             "abnormal": {"threshold": 0.232}}
    _fake_trial_model_call(monkeypatch, final, {"config": {"epochs": 3}}, best=False, retrain=True)
    err = capsys.readouterr().err
    assert "retraining trial 2 on all search patients for 3 epoch(s) (asked with --retrain) ..." in err
    assert ("note: study 's''s final model of trial 2 is the average of 2 patient-grouped fold models" in err
            and "at threshold 0.232: --retrain exports one model of its config instead, at the trial's threshold "
                "0.375 (--trial 2 without --retrain exports the final model)" in err), err
    _fake_trial_model_call(monkeypatch, None, {"mlflow_run_id": "abc"}, best=False)
    assert ("retraining trial 2 on all search patients (--no-mlflow: its model logged to MLflow is not fetched) ..."
            in capsys.readouterr().err)


def test_export_retrain_trains_a_trial_on_all_search_patients_and_the_trial_s_own_model_is_said_to_be_a_fold_s(
        exported, tmp_path, capsys):
    """A Pareto member exported with `--trial N` was its last fold's model (trained on part of the search patients,
    of a --max-beats subsample), and nothing said so; `--retrain` trains the config on all search patients first."""
    import optuna

    from ecg_automl.tflite.export import export_trial

    tmp, storage, _ = exported
    study = optuna.load_study(study_name="ex", storage=storage)
    other = next(t.number for t in study.trials if t.number != study.user_attrs["final"]["trial"])
    own = export_trial("ex", storage, str(other), "fp32", tmp_path / "own.tflite", tracking=tracking(tmp),
                       verify_beats=200, runs=10)
    assert own["model_origin"].startswith("trial model from MLflow run")
    assert (f"note: trial {other}'s own model is its last fold's, trained on about 1/2 of the search patients of a "
            f"800-beat subsample; --retrain") in capsys.readouterr().err
    again = export_trial("ex", storage, str(other), "fp32", tmp_path / "re.tflite", tracking=tracking(tmp),
                         verify_beats=200, runs=10, retrain=True)
    assert again["model_origin"].startswith("retrained (seed 1")
    epochs = study.trials[other].user_attrs["config"]["epochs"]
    assert (f"retraining trial {other} on all search patients for {epochs} epoch(s) (asked with --retrain)"
            in capsys.readouterr().err)


def test_export_tf_threads_sets_the_threads_a_retrain_trains_with(exported, tmp_path, cli_env):
    """A retrain's weights depend on the TensorFlow thread count, but export had no --tf-threads (search and worker
    have one): a study searched with --tf-threads 1 could not have a trial retrained as it was trained."""
    import optuna

    tmp, storage, _ = exported
    study = optuna.load_study(study_name="ex", storage=storage)
    other = next(t.number for t in study.trials if t.number != study.user_attrs["final"]["trial"])
    run_cli(["export", "--study", "ex", "--storage", storage, "--trial", other, "--retrain", "--tf-threads", 1,
             "--mode", "fp32", "--out", tmp_path / "t1.tflite", "--no-mlflow", "--verify-beats", 200, "--runs", 10],
            cwd=tmp, env=cli_env)
    assert json.loads((tmp_path / "t1.json").read_text())["model_origin"] == "retrained (seed 1, 1 TensorFlow thread)"


def test_export_times_the_file_on_a_bench_server_when_asked_and_says_whether_dynamic_quantised_anything(
        exported, tmp_path, monkeypatch):
    """A study measured on a bench-server was exported with the host's Pi 4 estimate only (and the device never
    recorded); `--mode dynamic` wrote the fp32 file unchanged on small models without a word."""
    import threading

    from ecg_automl.tflite.bench_server import make_server
    from ecg_automl.tflite.export import export_trial

    tmp, storage, out = exported
    assert isinstance(out["dynamic"][1]["int8_weight_tensors"], int) and "int8_weight_tensors" not in out["fp32"][1]
    server = make_server("127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        meta = export_trial("ex", storage, "best", "int8", tmp_path / "d.tflite", tracking=None, verify_beats=200,
                            runs=20, latency_target=url)
    finally:
        server.shutdown()
        server.server_close()
    lat = json.loads((tmp_path / "d.json").read_text())["latency"]
    assert lat["device_median_ms"] > 0 and lat["device_p90_ms"] >= lat["device_median_ms"]
    assert lat["device_target"] == url and lat["device"]["machine"] and meta["latency"] == lat


def test_the_sidecar_of_a_study_timed_on_a_bench_server_says_the_file_was_timed_here(exported, tmp_path, monkeypatch):
    """export's note that the study measured latency on a device, but this file was timed on this host, was printed
    and returned but never written: it was added to the sidecar's content after the sidecar had been written."""
    import search
    from ecg_automl.tflite.export import export_trial

    opened = search.open_study

    def measured_on_a_pi(*args, **kwargs):
        study, settings = opened(*args, **kwargs)
        settings.latency_target = "http://raspberrypi:8765"  # as a study searched with --latency-target records it
        return study, settings

    monkeypatch.setattr(search, "open_study", measured_on_a_pi)
    _, storage, _ = exported
    meta = export_trial("ex", storage, "best", "fp32", tmp_path / "n.tflite", tracking=None, verify_beats=200, runs=10)
    side = json.loads((tmp_path / "n.json").read_text())
    assert side["note_latency"] == meta["note_latency"]
    assert ("measured latency on the bench-server http://raspberrypi:8765; this file was timed on this host (and the "
            "Pi 4 estimated): add --latency-target http://raspberrypi:8765") in side["note_latency"]


def test_the_gate_times_a_model_of_the_study_s_leads(tmp_path):
    """A PTB-XL (12-lead) study gated and optimised the latency and size of a 1-lead model: the front said 13.7 KB,
    the export was 17.7 KB."""
    from types import SimpleNamespace

    import numpy as np

    from search.study import latency_gates

    settings = tiny_settings(tmp_path, objectives=["quality", "latency", "size"])
    twelve = SimpleNamespace(X=np.zeros((2, 192, 12), np.float32))
    gate, = latency_gates(settings, twelve)
    assert gate.channels == 12 and latency_gates(settings)[0].channels == 1
    config = {**UNTRAINED}
    one, many = gate.measure(config, channels=1), gate.measure(config)
    assert many["params"] > one["params"] and many["size_kb"] > one["size_kb"] and many["gate_channels"] == 12
    # a study resumed here whose trials an earlier version timed as 1-lead models is told so
    import optuna

    from search.study import _note_one_lead_gate

    study = optuna.create_study(study_name="px", directions=["maximize", "minimize"])
    study.add_trial(optuna.trial.create_trial(values=[0.7, 0.2], user_attrs={"latency_ms": 0.2}))
    study.add_trial(optuna.trial.create_trial(values=[0.6, 0.3], user_attrs={"latency_ms": 0.3, "gate_channels": 12}))
    lines: list[str] = []
    _note_one_lead_gate(study, [gate], lines.append)
    assert lines == ["note: trials 0 of study 'px' do not record the leads the gate timed: ecg-automl before "
                     "2026-12-06 timed and sized 1-lead models for every study, so if it made them, their latency "
                     "and size are not comparable with new trials' (12-lead models): start a new study for one front"]
    _note_one_lead_gate(study, latency_gates(settings), lines.append)  # a 1-lead study: nothing to say
    assert len(lines) == 1


def test_predict_says_which_preparation_values_of_a_sidecar_were_edited(untrained, data_root, tmp_path, cli_env):
    """fs 180 -> 360 in a sidecar flagged 187 of 2,271 beats of record 100 abnormal instead of 3, with no warning:
    predict still obeys the edit (the user may mean it), and says what was changed from what export wrote."""
    model = tmp_path / "edited.tflite"
    shutil.copy(untrained["mitdb"], model)
    meta = json.loads(untrained["mitdb"].with_suffix(".json").read_text())
    assert meta["prepared_as"]["fs"] == 180.0
    model.with_suffix(".json").write_text(json.dumps({**meta, "fs": 360.0, "threshold": 0.6}))
    proc = run_cli(["predict", model, "--record", data_root / "mitdb" / "100"], tmp_path, cli_env)
    assert "edited.json: its sidecar was edited since export: fs 360.0 (export wrote 180.0); beats are prepared" \
        in proc.stderr, proc.stderr[-2000:]
    assert "threshold" not in proc.stderr  # choosing another threshold is the user's call


def test_export_names_why_a_trial_was_pruned_takes_best_of_a_one_member_front_and_retrain_needs_a_trial(
        tmp_path, cli_env, monkeypatch):
    """`export --trial 0` of a pruned trial said only 'PRUNED ... nothing to export'; `--trial best` was refused
    on a multi-objective study whose front has one member (with --retrain it retrains that member); --retrain with
    the best of a single-objective study, its final model, is refused."""
    import optuna
    from optuna.distributions import CategoricalDistribution

    from ecg_automl.tflite import TFLiteError
    from ecg_automl.tflite import export as ex
    from search import open_study

    storage = f"sqlite:///{tmp_path / 'o.db'}"
    study, _ = open_study("mo", storage, tiny_settings(tmp_path, objectives=["quality", "latency"]))
    dist = {"x": CategoricalDistribution([1])}
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED, params={"x": 1},
                                              distributions=dist, user_attrs={"prune_reason": "latency 2.1 ms > budget 1 ms"}))
    study.add_trial(optuna.trial.create_trial(values=[0.7, 0.5], params={"x": 1}, distributions=dist,
                                              user_attrs={"config": {}}))
    with pytest.raises(TFLiteError, match=r"trial 0 is PRUNED, not COMPLETE: nothing to export \(latency 2.1 ms"):
        ex.export_trial("mo", storage, "0", "int8", tmp_path / "m.tflite")
    # a trial left RUNNING by a search killed with kill -9: "is RUNNING, not COMPLETE" said nothing of why or what next
    import os
    import socket

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for pid, now in ((dead.pid, "is no longer running (killed?): run the search command again, which marks the trial "
                                "failed once its heartbeat is stale"),
                     (os.getpid(), "is training it now: export it when that is done")):
        with pytest.warns(UserWarning, match="Heartbeat"):  # (Optuna: heartbeats are for Study.optimize)
            trial = study.ask()
        study._storage.set_trial_user_attr(trial._trial_id, "worker", f"{socket.gethostname()}:{pid}")
        with pytest.raises(TFLiteError, match=re.escape(f"trial {trial.number} is RUNNING, not COMPLETE: nothing to "
                                                        f"export; its search, {socket.gethostname()}:{pid}, {now}")):
            ex.export_trial("mo", storage, str(trial.number), "int8", tmp_path / "m.tflite")

    class Loaded(Exception):
        pass

    asked = {}

    def stop(study, trial, *args, **kwargs):
        asked.update(trial=trial.number, **kwargs)
        raise Loaded

    from types import SimpleNamespace

    monkeypatch.setattr("search.load_study_data", lambda *args: SimpleNamespace(test_part=lambda: [0]))  # test beats
    monkeypatch.setattr(ex, "_trial_model", stop)
    with pytest.raises(Loaded):  # past the choice of trial: the front's one member
        ex.export_trial("mo", storage, "best", "int8", tmp_path / "m.tflite")
    # not warned about a missing final model: a multi-objective study never makes one
    assert asked == {"trial": 1, "best": False, "retrain": False}
    asked.clear()
    with pytest.raises(Loaded):  # --retrain of a multi-objective best: its front's one member, retrained
        ex.export_trial("mo", storage, "best", "int8", tmp_path / "m.tflite", retrain=True)
    assert asked == {"trial": 1, "best": False, "retrain": True}
    one, _ = open_study("so", storage, tiny_settings(tmp_path))
    one.add_trial(optuna.trial.create_trial(value=0.7, params={"x": 1}, distributions=dist, user_attrs={"config": {}}))
    proc = run_cli(["export", "--study", "so", "--storage", storage, "--retrain", "--out", tmp_path / "m.tflite",
                    "--no-mlflow"], tmp_path, cli_env, check=False)
    assert proc.returncode == 2 and "--retrain retrains one trial's config: give --trial N" in proc.stderr


def test_retrain_of_the_final_model_s_trial_retrains_its_config_not_the_final_ensemble(monkeypatch, capsys, tmp_path):
    """`--trial N --retrain` naming the trial of the study's final model exported that final model (an ensemble
    with --final-members or --final-model folds), not the trial's config trained on all search patients."""
    from types import SimpleNamespace

    from ecg_automl.tflite.export import _trial_model
    from search import training

    final = tmp_path / "final-trial2.keras"
    final.write_bytes(b"not read")
    monkeypatch.setattr(training, "fit", lambda config, train, val, seed: SimpleNamespace(model="retrained"))
    study = SimpleNamespace(study_name="s", user_attrs={"final": {"trial": 2, "model_path": str(final)}})
    trial = SimpleNamespace(number=2, user_attrs={"config": {}, "threshold": 0.375})
    model, origin, _ = _trial_model(study, trial, SimpleNamespace(seed=1), SimpleNamespace(search_part=lambda: None),
                                    None, retrain=True)
    assert model == "retrained" and origin.startswith("retrained (seed 1")
    assert "(asked with --retrain)" in capsys.readouterr().err
