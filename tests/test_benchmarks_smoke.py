"""Smoke test of the benchmark scripts: each runs in --quick mode on real MIT-BIH beats and writes a complete
JSON result and a PNG plot (about 2-3 minutes on 2 busy cores)."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys

from conftest import ROOT

RATES = ("accuracy", "sensitivity", "specificity", "ppv", "f1", "roc_auc")
VERSIONS = ("python", "tensorflow", "keras", "ai-edge-litert", "optuna", "numpy")


def _run(script: str, out_dir, env, *extra: str) -> dict:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--quick", "--out-dir", str(out_dir), *extra],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)  # a hang guard, generous for busy CI hosts
    assert proc.returncode == 0, f"{script} exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    stem = script.removesuffix(".py")
    js, png = out_dir / f"{stem}_quick.json", out_dir / f"{stem}_quick.png"
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert not (out_dir / f"{stem}_quick.partial.json").exists()  # the per-seed progress file goes with success
    result = json.loads(js.read_text())
    assert result["mode"] == "quick" and script in result["command"] and "--quick" in result["command"]
    m = result["machine"]
    assert m["logical_cpus"] >= 1 and m["lscpu_model_name"]
    assert len(m["loadavg_start"]) == 3 and len(m["loadavg_end"]) == 3
    cal = result["pi4_calibration"]  # which host->Pi fit the run's Pi estimates used, measured on which CPU
    assert cal["source"] == "shipped" and cal["host_cpu"] and cal["matches_this_host"] == (cal["host_cpu"] == m["lscpu_model_name"])
    assert all(result["versions"][k] for k in VERSIONS)
    from ecg_data.cache import PIPELINE_VERSION

    assert result["source"]["pipeline_version"] == PIPELINE_VERSION
    if (ROOT / ".git").exists():  # the commit that wrote the numbers
        assert re.fullmatch(r"[0-9a-f]{40}", result["source"]["git_commit"]) and isinstance(result["source"]["git_dirty"], bool)
    return result


def _rate(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and 0.0 <= x <= 1.0


def test_quality_and_pipeline_cost_quick(tmp_path, cli_env):
    q = _run("quality.py", tmp_path, cli_env)
    assert q["settings"]["seeds"] == [0] and q["settings"]["epochs"] == 1
    res = q["results"]
    for arm in ("inter_patient_keras", "inter_patient_int8", "beat_level_split"):
        med = res[arm]["median"]
        for k in RATES:
            assert _rate(med[k]), (arm, k, med[k])
        assert _rate(med["threshold"])
        assert {"flagged_N", "flagged_S", "flagged_V"} <= set(med) and all(_rate(med[f"flagged_{c}"]) for c in "NSV")
        seed0 = res[arm]["per_seed"][0]
        cm = seed0["confusion_matrix"]
        assert cm["tn"] + cm["fp"] + cm["fn"] + cm["tp"] == seed0["test_beats"] == seed0["n"]
    ip = res["inter_patient_keras"]
    assert ip["train_beats"] <= 4100 and ip["test_beats"] > 40_000  # ~4,000 DS1 beats; every DS2 beat
    assert ip["per_seed"][0]["oof"]["folds"] == 3
    assert _rate(res["int8_vs_keras"]["decision_agreement"])
    leak = res["beat_level_split"]["leak"]
    assert leak["patients_on_both_sides"] > 0 and leak["check_no_leak_failed"] is True
    assert "context_published_not_measured" in q and "de Chazal" in q["context_published_not_measured"]["inter_patient_de_chazal_style"]

    p = _run("pipeline_cost.py", tmp_path, cli_env)
    s = p["summary"]
    assert 0 < s["data_prep_warm_seconds"] < s["data_prep_cold_seconds"]
    assert p["data_prep"][0]["cold_cache_hit"] is False and p["data_prep"][0]["warm_cache_hit"] is True
    assert s["steady_beats_per_s"] > 0 and s["first_epoch_beats_per_s"] > 0
    assert s["gate_seconds"] > 0 and s["gate_pi4_estimate_ms"] > 0
    for k in ("trial_training_share", "trial_other_share", "pooled_other_share", "gate_share_if_enabled"):
        assert _rate(s[k]), (k, s[k])
    trials = p["study"][0]["trials"]
    assert len(trials) == 2 and all(t["state"] == "COMPLETE" and t["folds"] == 2 for t in trials)
    for t in trials:
        assert 0 < t["training_seconds"] < t["total_seconds"]
        assert math.isclose(t["training_seconds"] + t["other_seconds"], t["total_seconds"])


def test_search_efficiency_quick(tmp_path, cli_env):
    # the driver as two worker processes on one study, KerasTuner as a chief oracle and two tuner processes
    # (the one-worker runs are the same code minus the start barrier)
    r = _run("search_efficiency.py", tmp_path, cli_env, "--optuna-workers", "2", "--kt-workers", "2",
             "--work-dir", str(tmp_path / "work"))
    st = r["settings"]
    assert st["seeds"] == [0] and st["engines"] == ["optuna", "kt-hyperband", "kt-random"]
    assert st["optuna_workers"] == 2 and st["optuna_tf_threads"] == 1
    assert st["kt_workers"] == 2 and st["kt_tf_threads"] == 1
    for run in r["runs"]:  # the chief oracle hands every trial number out once, whichever tuner runs it
        if run["engine"] != "optuna":
            assert {t["worker"] for t in run["trials"]} <= {0, 1}
            assert len({t["trial"] for t in run["trials"]}) == len(run["trials"])
    assert (tmp_path / "work" / "kt-random-0-chief.log").exists()
    import optuna

    study = optuna.load_study(study_name="eff-0", storage=f"sqlite:///{tmp_path / 'work' / 'optuna-0' / 'optuna.db'}")
    rows = [t for run in r["runs"] if run["engine"] == "optuna" for t in run["trials"]]
    assert {t["worker"] for t in rows} <= {0, 1} and len({t["trial"] for t in rows}) == len(rows)
    started = [t for t in study.trials if t.params]
    assert len({tuple(sorted(t.params.items())) for t in started}) == len(started), "two workers drew the same config"
    # a trial the budget's kill caught between drawing its config and storing its worker has no worker attr
    workers = {t.user_attrs["worker"] for t in started if "worker" in t.user_attrs}
    assert len(workers) == 2, f"one of the two workers ran no trial: {workers}"
    budget = st["budget_s"]
    assert {(run["engine"], run["seed"]) for run in r["runs"]} == {(e, 0) for e in st["engines"]}
    assert any(run["trials"] for run in r["runs"])
    for run in r["runs"]:
        # every engine ran and finished a trial, though on a busy host maybe only just after its budget
        assert len(run["trials"]) + run["trials_after_budget"] >= 1, f"{run['engine']} finished no trial"
        assert all(0 <= t["seconds"] <= budget for t in run["trials"])
        assert all(t["state"] in ("complete", "pruned", "rejected", "failed") for t in run["trials"])
    for engine, s in r["per_seed"]["0"].items():
        assert s["trials_finished"] == s["complete"] + s["pruned"] + s["rejected_by_latency_gate"] + s["failed"]
        values = [v for _, v in s["curve"]]
        assert values == sorted(values) and all(_rate(v) for v in values)  # best-so-far never drops
        if s["best_f1"] is not None:
            assert s["best_f1"] == max(t["value"] for run in r["runs"] if run["engine"] == engine
                                       for t in run["trials"] if t["state"] == "complete")
    assert r["medians"]["optuna"]["runs"] == 1 and _rate(st["target_f1"])
    for run in r["runs"]:  # KerasTuner's configs are timed afterwards with the driver's latency gate
        if run["engine"] != "optuna":
            assert all(t["latency_ms"] > 0 and t["within_latency_budget"] == (t["latency_ms"] <= 1.0)
                       for t in run["trials"])
    dep = r["optuna_vs_baselines_deployable"]
    assert dep["comparisons"] == len(dep["per_seed"]) <= 2
    comp = r["optuna_vs_baselines"]
    assert comp["comparisons"] == len(comp["per_seed"]) <= 2
    for c in comp["per_seed"]:
        assert c["optuna_reached"] == (c["optuna_time_s"] is not None)
    # --reanalyse recomputes the same summaries from the saved runs, without training
    js = tmp_path / "search_efficiency_quick.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "search_efficiency.py"), "--reanalyse", str(js)],
                          cwd=ROOT, env=cli_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = json.loads(js.read_text())
    assert again["medians"] == r["medians"] and again["optuna_vs_baselines"] == r["optuna_vs_baselines"]


def test_ptbxl_records_quick(tmp_path, cli_env, data_root):
    import pandas as pd
    import pytest

    table = data_root / "ptbxl" / "ptbxl_database.csv"
    if not table.exists():
        pytest.skip(f"no PTB-XL under {data_root}")
    # without the data: a clear error that names the folder and the fetch command, no download attempt
    empty = tmp_path / "no-data"
    empty.mkdir()
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "ptbxl_records.py"), "--quick", "--out-dir",
                           str(tmp_path / "none")], cwd=ROOT, env={**cli_env, "ECG_AUTOML_DATA": str(empty)},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and str(empty / "ptbxl") in proc.stderr and "ecg-automl data fetch ptbxl" in proc.stderr
    assert not (tmp_path / "none").exists()

    r = _run("ptbxl_records.py", tmp_path, cli_env)
    s = r["settings"]
    assert s["seeds"] == [0] and s["epochs"] == 1 and s["folds"] == 2 and s["aggregate"] == "mean"
    assert r["leak_check"]["no_leak"] is True and r["leak_check"]["patients_in_both_parts"] == 0
    assert r["data"]["strat_folds"] == {"search": list(range(1, 10)), "test": [10]}
    assert r["data"]["channels"] == 12 and r["data"]["rr_features_per_beat"] >= 1
    for level in ("record", "beat"):
        med = r["results"][level]["median"]
        for k in RATES:
            assert _rate(med[k]), (level, k, med[k])
        assert _rate(med["threshold"])
    seed0 = r["results"]["per_seed"][0]
    folds = pd.read_csv(table, index_col="ecg_id")["strat_fold"]
    test_ids = [int(t["ecg_id"]) for t in seed0["test_records"]]
    assert len(set(test_ids)) == len(test_ids) == seed0["test"]["records"] == r["data"]["test"]["records"] > 30
    assert (folds.loc[test_ids] == 10).all()  # test records are fold 10 only, straight from the CSV
    assert sum(t["beats"] for t in seed0["test_records"]) == seed0["test"]["beats"] == seed0["beat"]["n"]
    assert sum(t["y"] for t in seed0["test_records"]) == seed0["test"]["abnormal_records"]
    assert all(_rate(t["prob"]) for t in seed0["test_records"])
    for level, n in (("record", seed0["test"]["records"]), ("beat", seed0["test"]["beats"])):
        cm = seed0[level]["confusion_matrix"]
        assert cm["tn"] + cm["fp"] + cm["fn"] + cm["tp"] == seed0[level]["n"] == n
        assert cm["fn"] + cm["tp"] == seed0[level]["n_abnormal"]
    assert seed0["train"]["records"] + seed0["test"]["records"] == r["data"]["search"]["records"] + r["data"]["test"]["records"]
    assert seed0["train"]["records"] > 300 and seed0["oof"]["folds"] == 2 and seed0["oof"]["oof_records"] == seed0["train"]["records"]
    ctx = r["context_published_not_measured"]
    assert "not measured" in ctx["note"].lower() or "not results" in ctx["note"].lower()
    assert _rate(ctx["accuracy"]) and _rate(ctx["f1"])


def test_edge_quick(tmp_path, cli_env):
    """The edge benchmark: a small latency-aware study, its Pareto front exported in all four TFLite modes."""
    e = _run("edge.py", tmp_path, cli_env)
    study = e["study"]
    assert study["objectives"][:2] == ["quality", "latency"] and study["directions"][:2] == ["maximize", "minimize"]
    assert e["settings"]["folds"] == 2 and e["settings"]["epochs"] == 1 and len(e["trials"]) >= 3
    completed = [t for t in e["trials"] if t["state"] == "COMPLETE"]
    assert completed and e["front"] and e["members"]
    objectives, directions = study["objectives"], study["directions"]

    def dominates(a, b):
        ge = all((x >= y) if d == "maximize" else (x <= y) for x, y, d in zip(a, b, directions))
        return ge and any((x > y) if d == "maximize" else (x < y) for x, y, d in zip(a, b, directions))

    front = {r["trial"] for r in e["front"]}
    assert front <= {t["number"] for t in completed}
    for r in e["front"]:  # no completed trial dominates a front member
        v = [r[o] for o in objectives]
        assert not any(dominates([t["values"][o] for o in objectives], v) for t in completed), r
    dominated = [t for t in completed if t["number"] not in front]
    for t in dominated:  # and every other completed trial is dominated by some front member
        assert any(dominates([r[o] for o in objectives], [t["values"][o] for o in objectives]) or
                   [r[o] for o in objectives] == [t["values"][o] for o in objectives] for r in e["front"]), t
    assert {m["trial"] for m in e["members"]} <= front and len(e["members"]) <= e["settings"]["max_front"]
    assert e["front_dominated_by_a_completed_trial"] == []
    n_ds2 = e["settings"]["ds2_beats_used"]
    assert 0 < n_ds2 < e["settings"]["ds2_beats_total"]
    for m in e["members"]:
        assert set(m["modes"]) == {"fp32", "dynamic", "fp16", "int8"}, m["trial"]
        assert m["params"] > 0 and _rate(m["threshold"]) and _rate(m["study"]["val_f1"])
        assert m["study"]["latency_objective_ms"] > 0 and m["train"]["beats"] > 0
        assert all(_rate(m["keras"]["ds2"][k]) for k in ("f1", "sensitivity", "ppv", "roc_auc"))
        for mode, x in m["modes"].items():
            assert x["size_bytes"] > 0 and math.isclose(x["size_kb"], x["size_bytes"] / 1024)
            lat = x["latency"]
            assert lat["p90_ms"] >= lat["median_ms"] > 0 and lat["threads"] == 1, (m["trial"], mode, lat)
            assert x["pi4_estimate_ms"] > 0 and x["pi4_dtype"] == ("int8" if mode == "int8" else "float32")
            ds2 = x["ds2"]
            assert ds2["n"] == n_ds2 and ds2["threshold"] == m["threshold"]
            assert all(_rate(ds2[k]) for k in ("f1", "sensitivity", "ppv", "specificity", "roc_auc")), (mode, ds2)
            assert _rate(x["vs_keras"]["decision_agreement"])
        assert m["modes"]["int8"]["size_bytes"] < m["modes"]["fp32"]["size_bytes"], m["trial"]
        assert m["modes"]["fp32"]["vs_keras"]["decision_agreement"] >= 0.999  # fp32 is the Keras model
    assert len(e["table"]) == 4 * len(e["members"])


def test_fold_ensemble_quick(tmp_path, cli_env):
    r = _run("fold_ensemble.py", tmp_path, cli_env)
    st = r["settings"]
    assert st["seeds"] == [0] and st["folds"] == 2 and st["epochs"] == 1 and r["config"]["epochs"] == 1
    run = r["runs"][0]
    assert run["train_beats"] <= 4100 and run["test_beats"] > 40_000  # ~4,000 DS1 beats; every DS2 beat
    assert _rate(run["threshold"]) and _rate(run["oof_f1_at_threshold"])
    members = run["members"]
    assert [m["fold"] for m in members] == [0, 1]
    assert sum(m["train_beats"] for m in members) == run["train_beats"]  # each beat is trained on by K-1 folds
    one = run["ensemble_int8_one_file"]  # the fold models averaged in one graph, one int8 file
    for scored in ([m[kind] for m in members for kind in ("keras", "int8")]
                   + [run["ensemble_keras"], run["ensemble_int8"], one]):
        for k in ("roc_auc", "f1", "sensitivity", "ppv", "f1_at_0.5", "f1_at_test_optimal_threshold_not_deployable"):
            assert _rate(scored[k]), (k, scored[k])
        # the DS2-optimal F1 is an upper bound of the F1 at any fixed threshold
        assert scored["f1_at_test_optimal_threshold_not_deployable"] >= max(scored["f1"], scored["f1_at_0.5"]) - 1e-9
    assert math.isclose(run["ensemble_int8_ms_median"], sum(m["int8_ms_median"] for m in members))
    assert math.isclose(run["ensemble_int8_size_kb"], sum(m["int8_size_kb"] for m in members))
    assert all(0 < m["int8_ms_median"] <= m["int8_ms_p90"] for m in members)
    assert 0 < one["ms_median"] <= one["ms_p90"] and one["size_kb"] > max(m["int8_size_kb"] for m in members)
    # one file computes what the members' files average: the same ranking, nearly the same decisions
    assert abs(one["roc_auc"] - run["ensemble_int8"]["roc_auc"]) < 0.01 and one["decision_agreement_with_keras"] > 0.95
    assert r["medians"]["ensemble_int8_one_file"]["roc_auc"] == one["roc_auc"]
    c = run["curves"]
    assert len(c["threshold"]) == len(c["ds1_oof"]) == len(c["ds2_ensemble_keras"]) > 10
    assert r["medians"]["ensemble_keras"]["roc_auc"] == run["ensemble_keras"]["roc_auc"]


def test_ensemble_latency_quick(tmp_path, cli_env):
    """ensemble_latency.py times the one-file int8 average of K members (one epoch of training each) for each K, and
    a trained member beside an untrained one; a K-member file is about K times as large and as slow as one member."""
    r = _run("ensemble_latency.py", tmp_path, cli_env)
    st = r["settings"]
    assert st["members"] == [1, 2] and st["rounds"] == 1 and st["tflite_threads"] == 1 and st["bar_ms"] == 1.0
    one, two = r["ensembles"]
    assert [one["members"], two["members"]] == [1, 2]
    for e in (one, two, r["control"]["untrained"], r["control"]["trained_1_epoch"]):
        assert 0 < e["ms_median"] <= e["ms_p90"] and len(e["ms_median_per_round"]) == 1 and e["pi4_estimate_ms"] > 0
        assert isinstance(e["pi4_estimate_extrapolated"], bool)
    assert one["under_bar"] == (one["ms_median"] < 1.0)
    assert 1.7 < two["size_kb"] / one["size_kb"] < 2.1 and two["ms_median"] > 1.1 * one["ms_median"]
    c = r["control"]
    assert c["trained_1_epoch"]["size_kb"] == one["size_kb"]  # the control's trained member is K=1's
    assert abs(c["untrained"]["size_kb"] - one["size_kb"]) < 0.1 * one["size_kb"]  # the same graph
    assert math.isclose(c["trained_over_untrained"], c["trained_1_epoch"]["ms_median"] / c["untrained"]["ms_median"])


def test_rr_features_quick(tmp_path, cli_env):
    r = _run("rr_features.py", tmp_path, cli_env)
    assert r["settings"]["seeds"] == [0] and r["settings"]["rounds"] == 50
    groups = r["settings"]["groups"]
    assert groups["nine (pipeline version 5)"] == list(range(9)) and groups["all fourteen (pipeline version 6)"] == list(range(14))
    for name in groups:
        med = r["medians"][name]
        assert all(_rate(med[k]) and med[k] > 0.8 for k in ("ds1_oof_roc_auc", "ds2_roc_auc", "ds2_roc_auc_N_vs_V")), (name, med)
        assert _rate(med["ds2_roc_auc_N_vs_S"]) and _rate(med["ds2_roc_auc_N_vs_F"])  # F beats: near chance from rhythm
        assert len(r["per_seed"][name]) == 1


def test_csv_rows_quick(tmp_path, cli_env):
    """csv_rows.py makes a model through the CLI (search, export) and classifies 213 as a record and as CSV rows."""
    r = _run("csv_rows.py", tmp_path, cli_env, "--work-dir", str(tmp_path / "work"))
    made = r["model"]["made"]
    assert made["search_command"][:2] == ["ecg-automl", "search"] and made["export_command"][:2] == ["ecg-automl", "export"]
    assert (tmp_path / "work" / "quickstart-int8.tflite").exists() and (tmp_path / "work" / "quickstart-int8.json").exists()
    assert r["model"]["mode"] == "int8" and r["model"]["filter"]["low"] == 0.5 and len(r["model"]["sha256"]) == 64
    (rec,) = r["records"]
    assert rec["record"] == "213" and rec["lead"] == "MLII" and rec["beats"] > 3000
    for kind in ("filtered", "raw", "filtered_per_row"):
        x = rec["rows"][kind]
        assert len(x["abs_dp"]) == rec["beats"] and x["changed_decisions"] == x["to_abnormal"] + x["to_normal"]
        assert math.isclose(x["max_abs_dp"], max(x["abs_dp"]), abs_tol=1e-6) and 0 <= x["max_abs_dp"] <= 1
        assert r["totals"][kind]["changed_decisions"] == x["changed_decisions"]
    # rows cut as predict cuts a record, written with 9 digits, are the record's windows: its decisions
    assert rec["rows"]["filtered"]["changed_decisions"] == 0 and rec["rows"]["filtered"]["max_abs_dp"] < 0.01
    assert set(rec["filtered_by_precision"]) == {"%.9g", "%.6g", "%.5f", "%.4f", "%.3f"}


def test_pruner_signal_ranks_what_a_study_stored(tmp_path, cli_env):
    """search_efficiency.py --pruner-signal reads the studies of a work dir: a step whose reported value
    orders the trials as their objective does gets rho 1; a step that reports noise does not."""
    import numpy as np
    import optuna
    from test_search import tiny_settings

    from spaces import SearchSpace

    settings = tiny_settings(tmp_path)
    settings.folds = 3
    settings.space_yaml = SearchSpace.from_yaml(settings.space_yaml).with_overrides(epochs=2).to_yaml()
    work = tmp_path / "work" / "optuna-0"
    work.mkdir(parents=True)
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{work / 'optuna.db'}", direction="maximize")
    study.set_user_attr("settings", settings.to_dict())
    rng = np.random.default_rng(0)
    for i in range(12):
        t = study.ask()
        folds = [0.3 + 0.05 * i, 0.2 + 0.04 * i, 0.1 + 0.03 * i]  # every fold ranks the trials alike
        for step, value in enumerate([0.5 + 0.01 * i, 0.6 + 0.02 * i, rng.random(), rng.random()]):
            t.report(value, step)
        t.set_user_attr("fold_metrics", [{"objective": f} for f in folds])
        study.tell(t, float(np.mean(folds)))
    lost = study.ask()  # a trial without its folds (pruned, failed) is left out
    study.tell(lost, state=optuna.trial.TrialState.FAIL)

    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "search_efficiency.py"), "--pruner-signal",
                           str(tmp_path / "work"), "--out-dir", str(out)], cwd=ROOT, env=cli_env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads((out / "search_efficiency_pruner_signal.json").read_text())
    png = out / "search_efficiency_pruner_signal.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    (g,) = r["groups"]
    assert g["trials"] == 12 and g["folds"] == 3 and g["epochs_per_fold"] == 2
    steps = {p["step"]: p for p in g["per_step"]}
    assert sorted(steps) == [0, 1, 2, 3] and steps[2]["fold"] == 2 and steps[2]["epoch"] == 1
    for s in (0, 1):
        assert steps[s]["vs_objective"]["rho"] == 1.0 and steps[s]["vs_unseen_folds"]["rho"] == 1.0
    assert abs(steps[2]["vs_objective"]["rho"]) < 0.9
    lo, hi = steps[2]["vs_objective"]["ci90"]
    assert -1 <= lo <= steps[2]["vs_objective"]["rho"] <= hi <= 1
    # nothing to read: a clear error naming the folder
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "search_efficiency.py"), "--pruner-signal",
                           str(empty)], cwd=ROOT, env=cli_env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and f"no optuna.db under {empty}" in proc.stderr


def test_sampler_surrogate_learns_measured_trials(tmp_path, cli_env):
    """search_efficiency.py --sampler-surrogate fits a forest to the full-epoch trials of result files (not
    Hyperband's short rungs, not files of another objective or data pipeline version) and races the samplers."""
    import numpy as np
    import optuna

    from ecg_data.cache import PIPELINE_VERSION
    from spaces import SearchSpace

    space = SearchSpace.load("default")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    rng = np.random.default_rng(0)
    trials = []
    for _ in range(60):  # F1 rises with the learning rate: a signal the forest must find
        cfg = space.suggest(study.ask())
        value = 0.3 + 0.2 * np.log10(cfg["learning_rate"] / 3e-4) + rng.normal(0, 0.01)
        trials.append({"state": "complete", "value": value, "epochs": 4, "config": cfg})
    short = dict(trials[0], epochs=2, value=0.99)  # a Hyperband rung: left out
    src = {"pipeline_version": PIPELINE_VERSION}
    data = {"settings": {"metric": "f1"}, "source": src,
            "runs": [{"trials": trials + [short, {"state": "pruned", "value": None}]}]}
    other = {"settings": {"metric": "auc"}, "source": src, "runs": [{"trials": trials}]}  # another objective
    older = {"settings": {"metric": "f1"}, "source": {"pipeline_version": PIPELINE_VERSION - 1},
             "runs": [{"trials": trials}]}  # beats prepared otherwise
    (tmp_path / "a.json").write_text(json.dumps(data))
    (tmp_path / "b.json").write_text(json.dumps(other))
    (tmp_path / "c.json").write_text(json.dumps(older))
    out = tmp_path / "out"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "search_efficiency.py"), "--sampler-surrogate",
           *(str(tmp_path / f) for f in ("a.json", "b.json", "c.json")), "--quick", "--repeats", "4", "--draws", "12",
           "--out-dir", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, env=cli_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads((out / "search_efficiency_sampler_surrogate_quick.json").read_text())
    png = out / "search_efficiency_sampler_surrogate_quick.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert r["settings"]["result_files"] == ["a.json"]
    sim = r["simulation"]
    assert sim["surrogate"]["trials"] == 60 and sim["surrogate"]["oob_r2"] > 0.8
    assert sim["surrogate"]["best_measured"] == max(t["value"] for t in trials)
    # the oracle's config is the surrogate's best: the planted signal puts it at a high learning rate
    assert sim["surrogate"]["best_predicted"] <= sim["surrogate"]["best_measured"]
    assert sim["surrogate"]["best_predicted_config"]["learning_rate"] > 3e-3
    for level in sim["noise"].values():
        assert set(level["samplers"]) == ({"random", "oracle", "top_1%", "top_5%", "top_20%"}
                                          | {f"tpe_startup_{k}" for k in (2, 4, 7, 10)})
        first = {n: s["median_best_after"][0] for n, s in level["samplers"].items()}
        # from trial 1: the best config, then draws from ever larger shares of the best configs, then random
        assert first["oracle"] >= first["top_1%"] >= first["top_20%"] > first["random"]
        random = level["samplers"]["random"]["median_best_after"]
        for name, s in level["samplers"].items():
            med = s["median_best_after"]
            assert len(med) == 12 and all(a <= b for a, b in zip(med, med[1:]))
            assert all(q25 <= m <= q75 for q25, m, q75 in zip(s["q25_best_after"], med, s["q75_best_after"]))
            p = s["p_within_half_of_random"]
            assert 0 <= p <= 1 and math.isclose(s["p_median_of_3_seeds_passes"], p ** 3 + 3 * p * p * (1 - p))
            assert list(s["by_budget"]) == ["4", "8", "12"]  # the budgets below the run's 12 trials, and 12
            assert s["by_budget"]["12"]["p_within_half_of_random"] == p
            share = s.get("share_of_draws_in_top_20%")  # only for the samplers that draw configs
            assert (share is None) == (name == "oracle" or name.startswith("top_"))
            if share is not None:
                assert list(share) == ["1-4", "5-8", "9-12"] and all(0 <= v <= 1 for v in share.values())
            if name == "random":  # uniform draws land in the best fifth about a fifth of the time
                assert 0.05 <= np.mean(list(share.values())) <= 0.45
            if name.startswith("tpe_startup_"):  # TPE's start-up draws are random search's draws, same seed
                k = int(name.rsplit("_", 1)[1])
                assert med[:k] == random[:k]
    assert "tpe_startup_7" in proc.stdout
    # a file that is not there, and too few trials: clear errors
    proc = subprocess.run(cmd[:3] + [str(tmp_path / "missing.json")], cwd=ROOT, env=cli_env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode != 0 and "missing.json: no such result file" in proc.stderr
    proc = subprocess.run(cmd[:3] + [str(tmp_path / "b.json")], cwd=ROOT, env=cli_env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode != 0 and "the surrogate needs at least 20" in proc.stderr


def test_worker_throughput_quick(tmp_path, cli_env):
    """search_efficiency.py --worker-throughput: the same draws with one process and with two 1-thread workers."""
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "search_efficiency.py"), "--worker-throughput",
                           "--quick", "--out-dir", str(tmp_path)], cwd=ROOT, env=cli_env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads((tmp_path / "search_efficiency_worker_throughput_quick.json").read_text())
    png = tmp_path / "search_efficiency_worker_throughput_quick.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert all(r["versions"][k] for k in VERSIONS) and r["machine"]["lscpu_model_name"]
    m = r["measurement"]
    assert m["workers"] == 2 and m["draws"] == 2 and len(m["repeats"]) == 1
    rep = m["repeats"][0]
    for layout in ("default", "one_thread", "workers"):
        x = rep[layout]
        assert len(x["draw_seconds"]) == 2 and all(s > 0 for s in x["draw_seconds"])
        # the layout's wall time holds its draws (in sequence, or split over the workers)
        assert x["wall_s"] >= (sum(x["draw_seconds"]) / 2 if layout == "workers" else sum(x["draw_seconds"])) * 0.999
        assert 0 < x["cores_busy"] <= r["machine"]["logical_cpus"] + 0.5
    assert math.isclose(rep["speedup"], rep["default"]["wall_s"] / rep["workers"]["wall_s"])
    assert f"{m['speedup_median']:.2f}x" in proc.stdout


BAD_ARGS = [  # what a user may mistype, refused before any work: one usage line, exit 2, no traceback
    ("quality.py", ["--folds", "1"], "argument --folds: must be at least 2, not 1"),
    ("quality.py", ["--max-beats", "0"], "argument --max-beats: must be at least 1, not 0"),  # 0 was "all beats"
    ("quality.py", ["--epochs", "0"], "argument --epochs: must be at least 1"),
    ("quality.py", ["--config", "{missing}"], "argument --config: cannot read"),
    ("quality.py", ["--config", "{malformed}"], "is not valid JSON"),
    ("fold_ensemble.py", ["--max-beats", "-5"], "argument --max-beats: must be at least 1, not -5"),
    ("fold_ensemble.py", ["--repeats", "0"], "argument --repeats: must be at least 1, not 0"),
    # the next two ran: a study whose every trial the gate rejected ("no completed trial", exit 1), and a target
    # no engine can ever reach
    ("edge.py", ["--latency-budget-ms", "-1"], "argument --latency-budget-ms: must be a finite number above 0"),
    ("search_efficiency.py", ["--target", "2"], "argument --target: must be an F1 of at most 1, not 2"),
    ("rr_features.py", ["--folds", "1"], "argument --folds: must be at least 2, not 1"),
    ("fold_ensemble.py", ["--config", "{malformed}"], "is not valid JSON"),
    ("ptbxl_records.py", ["--config", "{missing}"], "argument --config: cannot read"),
    ("ptbxl_records.py", ["--epochs", "x"], "argument --epochs: 'x' is not an integer"),
    ("pipeline_cost.py", ["--study-folds", "1"], "argument --study-folds: must be at least 2"),
    ("pipeline_cost.py", ["--config", "{malformed}"], "is not valid JSON"),
    ("edge.py", ["--ds2-beats", "0"], "argument --ds2-beats: must be at least 1"),
    ("search_efficiency.py", ["--budget", "-1"], "argument --budget: must be a finite number above 0, not -1"),
    ("search_efficiency.py", ["--folds", "1"], "argument --folds: must be at least 2"),
    ("rr_features.py", ["--out-dir", "{unwritable}"], "argument --out-dir: cannot create"),
    ("quality.py", ["--out-dir", "{unwritable}"], "argument --out-dir: cannot create"),
    ("quality.py", ["--seed", "-1"], "argument --seed: must be at least 0, not -1"),  # numpy's ValueError after loading
    ("edge.py", ["--seed", "-1"], "argument --seed: must be at least 0"),
    ("search_efficiency.py", ["--seeds", "0", "-2"], "argument --seeds: must be at least 0, not -2"),
    ("search_efficiency.py", ["--seeds", "0", "1", "0"], "argument --seeds: seed 0 given more than once"),  # ran 0 twice
    ("search_efficiency.py", ["--sampler-surrogate", "--draws", "0"], "argument --draws: must be at least 1, not 0"),
    ("search_efficiency.py", ["--worker-throughput", "--repeats", "-1"], "argument --repeats: must be at least 1"),
    ("csv_rows.py", ["--model", "{missing}"], "argument --model: "),  # not a file: before any search
    ("csv_rows.py", ["--records", ","], "argument --records: no record given"),
    ("pi_install.py", ["--repeats", "0"], "argument --repeats: must be at least 1, not 0"),
    ("ensemble_latency.py", ["--members", "1,0"], "argument --members: each member count must be at least 1"),
    ("ensemble_latency.py", ["--members", "5,5"], "argument --members: a member count is given more than once"),
    ("ensemble_latency.py", ["--members", "a"], "argument --members: give whole numbers separated by commas"),
    ("ensemble_latency.py", ["--rounds", "0"], "argument --rounds: must be at least 1, not 0"),
    ("pi_install.py", ["--python", "{missing}"], "cannot run"),
    ("calibrate_pi.py", ["--rounds", "0"], "argument --rounds: must be at least 1, not 0"),  # was a traceback after
    ("calibrate_pi.py", ["--json", "{unwritable}"], "argument --json: cannot create"),      # minutes of conversion
    ("calibrate_pi.py", ["--json", "{missing}", "--fit-only"], "--fit-only measures nothing"),  # was ignored
    ("calibrate_pi.py", ["--quick", "--fit-only"], "--fit-only measures nothing"),
]


def test_calibrate_pi_quick(tmp_path, cli_env, monkeypatch):
    """The Pi calibration's smoke run times its three smallest models on this host and writes a result file that
    says where and with what (as every benchmark's does) and a plot; it fits nothing, and its file is refused as
    a calibration (two thirds of its points have no host value)."""
    import pytest

    from ecg_automl.tflite.pi_estimate import CALIBRATION, CalibrationError, _load_host_calibration

    out = tmp_path / "calib.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "calibrate_pi.py"), "--quick", "--json", str(out),
                           "--cache", str(tmp_path / "cache")], cwd=ROOT, env=cli_env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    doc = json.loads(out.read_text())
    assert doc["mode"] == "quick" and "--quick" in doc["command"] and doc["fit"] is None
    assert doc["machine"]["lscpu_model_name"] and len(doc["machine"]["loadavg_end"]) == 3
    assert all(doc["versions"][k] for k in ("python", "tensorflow", "ai-edge-litert"))
    measured = [p for p in doc["points"] if p["host_ms"] is not None]
    assert len(doc["points"]) == len(CALIBRATION) and len(doc["settings"]["models_measured"]) == 3
    assert {f"{p['arch']}-{p['alpha']:g}-{p['res']}-{p['dtype']}" for p in measured} == set(doc["settings"]["models_measured"])
    assert all(0 < p["host_ms"] <= p["host_median_ms"] for p in measured)  # a 5th percentile is at most the median
    assert "3 of 9 models measured, no fit" in proc.stdout
    png = out.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    with pytest.raises(CalibrationError, match="--quick file"):
        _load_host_calibration(out)


def test_bad_arguments_are_one_usage_line(tmp_path, cli_env):
    import pytest

    (tmp_path / "malformed.json").write_text("{bad")
    (tmp_path / "file").write_text("")
    paths = {"missing": tmp_path / "missing.json", "malformed": tmp_path / "malformed.json",
             "unwritable": tmp_path / "file" / "out"}  # below a plain file: cannot be created, even by root
    failures = []
    for script, extra, expected in BAD_ARGS:
        argv = [a.format(**paths) for a in extra]
        if script != "calibrate_pi.py":  # it has neither
            argv = ["--quick", *argv] if "--out-dir" in argv else ["--quick", *argv, "--out-dir", str(tmp_path / "out")]
        proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *argv], cwd=ROOT,
                              env=cli_env, capture_output=True, text=True, timeout=120)
        last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
        if proc.returncode != 2 or "Traceback" in proc.stderr or expected not in last:
            failures.append(f"{script} {' '.join(argv)}: exit {proc.returncode}, {proc.stderr[-600:]}")
    if failures:
        pytest.fail("\n".join(failures))


FULL_RUN_TIME = {"quality.py": "2 h 15 min", "fold_ensemble.py": "28 min", "edge.py": "12 min",
                 "search_efficiency.py": "50 min", "pipeline_cost.py": "1,310 s", "ptbxl_records.py": "462-635 s",
                 "rr_features.py": "about 5 min", "csv_rows.py": "116 s", "pi_install.py": "102 s",
                 "ensemble_latency.py": "91 s"}  # as the result files' wall_seconds / docs/RESULTS.md say


def test_help_states_what_a_full_run_costs(cli_env):
    """--help: the whole first paragraph as the description (not a sentence cut at its first line), the
    docstring's examples with the full run's time, and what --out-dir is."""
    for script, cost in FULL_RUN_TIME.items():
        out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--help"], cwd=ROOT, env=cli_env,
                             capture_output=True, text=True, timeout=120).stdout
        description = out.split("\n\n")[1]
        assert description.rstrip().endswith((".", "?", ")")), (script, description)
        assert f"python benchmarks/{script}" in out and cost in out, script
        assert "folder for the result JSON" in out, script


def test_help_seconds_are_the_named_result_files_wall_seconds():
    """Where a script's docstring (its --help) gives a full run's seconds beside the result file it came from
    ("714 s on 2 cores, results/edge_full.json"), that file's ``wall_seconds`` says the same: a rerun that rewrites
    the file must carry its time into the help (pi_install's said 147 s, the time of the file's previous version)."""
    import ast

    stated = []
    for script in sorted((ROOT / "benchmarks").glob("*.py")):
        doc = " ".join((ast.get_docstring(ast.parse(script.read_text())) or "").split())
        for seconds, name in re.findall(r"(\d[\d,]*) s\b[^()]*?results/(\w+\.json)", doc):
            wall = json.loads((ROOT / "benchmarks" / "results" / name).read_text())["wall_seconds"]
            stated.append((script.name, name, int(seconds.replace(",", "")), wall))
    assert len(stated) >= 5, stated  # quality, edge, pipeline_cost, csv_rows, pi_install
    wrong = [s for s in stated if abs(s[2] - s[3]) > max(1.0, 0.02 * s[3])]
    assert not wrong, f"--help seconds that are not the result file's wall_seconds (script, file, said, measured): {wrong}"
