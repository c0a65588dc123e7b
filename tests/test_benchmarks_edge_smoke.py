"""Smoke test of the edge benchmark scripts (edge.py, fold_ensemble.py, ensemble_latency.py) in --quick mode."""

from __future__ import annotations

import math

import numpy as np

from benchsmoke import is_rate, run_quick


def test_edge_quick(tmp_path, cli_env):
    """The edge benchmark: a small latency-aware study, its Pareto front exported in all four TFLite modes."""
    e = run_quick("edge.py", tmp_path, cli_env)
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
        assert m["params"] > 0 and is_rate(m["threshold"]) and is_rate(m["study"]["val_f1"])
        assert m["study"]["latency_objective_ms"] > 0 and m["train"]["beats"] > 0
        assert all(is_rate(m["keras"]["ds2"][k]) for k in ("f1", "sensitivity", "ppv", "roc_auc"))
        for mode, x in m["modes"].items():
            assert x["size_bytes"] > 0 and math.isclose(x["size_kb"], x["size_bytes"] / 1024)
            lat = x["latency"]
            assert lat["p90_ms"] >= lat["median_ms"] > 0 and lat["threads"] == 1, (m["trial"], mode, lat)
            assert x["pi4_estimate_ms"] > 0 and x["pi4_dtype"] == ("int8" if mode == "int8" else "float32")
            ds2 = x["ds2"]
            assert ds2["n"] == n_ds2 and ds2["threshold"] == m["threshold"]
            assert all(is_rate(ds2[k]) for k in ("f1", "sensitivity", "ppv", "specificity", "roc_auc")), (mode, ds2)
            assert is_rate(x["vs_keras"]["decision_agreement"])
        assert m["modes"]["int8"]["size_bytes"] < m["modes"]["fp32"]["size_bytes"], m["trial"]
        assert m["modes"]["fp32"]["vs_keras"]["decision_agreement"] >= 0.999  # fp32 is the Keras model
    assert len(e["table"]) == 4 * len(e["members"])


def test_fold_ensemble_quick(tmp_path, cli_env):
    r = run_quick("fold_ensemble.py", tmp_path, cli_env, "--repeats", "2")
    st = r["settings"]
    assert st["seeds"] == [0] and st["folds"] == 2 and st["epochs"] == 1 and r["config"]["epochs"] == 1
    assert st["repeats"] == 2
    run = r["runs"][0]
    assert run["train_beats"] <= 4100 and st["ds2_beats"] == 5000  # ~4,000 DS1 beats; a DS2 subsample of ~5,000
    assert 5000 <= run["test_beats"] < 5100 and run["test_beats_total"] > 40_000
    assert is_rate(run["threshold"]) and is_rate(run["oof_f1_at_threshold"])
    members = run["members"]
    assert [(m["repeat"], m["fold"]) for m in members] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    # each beat is trained on by K-1 folds of each repeat
    assert sum(m["train_beats"] for m in members) == 2 * run["train_beats"]
    # a member deployed alone takes the single models' threshold: scored there too, beside the average's
    single = run["single_model_oof_threshold"]
    assert is_rate(single) and all(is_rate(m["keras_at_single_model_oof_threshold"]["f1"]) for m in members)
    assert r["medians"]["member_keras_median_at_single_model_oof_threshold"]["f1"] == float(
        np.median([m["keras_at_single_model_oof_threshold"]["f1"] for m in members]))
    one = run["ensemble_int8_one_file"]  # the fold models averaged in one graph, one int8 file
    for scored in ([m[kind] for m in members for kind in ("keras", "int8")]
                   + [run["ensemble_keras"], run["ensemble_int8"], one]):
        for k in ("roc_auc", "f1", "sensitivity", "ppv", "f1_at_0.5", "f1_at_test_optimal_threshold_not_deployable"):
            assert is_rate(scored[k]), (k, scored[k])
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
    r = run_quick("ensemble_latency.py", tmp_path, cli_env)
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


def test_threshold_rules_quick(tmp_path, cli_env):
    r = run_quick("threshold_rules.py", tmp_path, cli_env)
    assert r["settings"] == {"seeds": [0], "folds": 3, "epochs": 1, "max_beats": 4000, "ds2_beats": 5000}
    run = r["runs"][0]
    assert run["train_beats"] <= 4100 and 5000 <= run["test_beats"] < 5100 and run["test_beats_total"] > 40_000
    assert set(run["rules"]) == {"median_of_fold_best", "pooled_best", "mean_curve_best",
                                 "mean_curve_plateau_middle", "median_curve_best"}
    for name, rule in run["rules"].items():
        lofo = rule["ds1_leave_one_fold_out"]
        assert is_rate(rule["threshold"]) and is_rate(rule["ds2_f1"]) and is_rate(lofo["f1"]), name
        assert len(lofo["thresholds"]) == len(lofo["fold_f1"]) == 3
        assert rule["ds2_f1"] <= run["ds2_optimal_f1_not_deployable"] + 1e-9  # the optimum over every threshold
    assert is_rate(run["ds2_roc_auc"]) and is_rate(run["ds1_oof_roc_auc"])
    assert len(run["curves"]["ds1_mean_over_folds"]) == len(run["curves"]["ds2"]) == len(r["grid"])
    m = r["medians"]
    assert m["chosen_on_ds1"] == max(m["rules"], key=lambda n: m["rules"][n]["ds1_leave_one_fold_out_f1"])
    import numpy as np

    with np.load(tmp_path / "threshold_rules_quick_predictions.npz") as z:  # another rule can be tried on these
        assert len(z["seed0_ds1_oof"]) == len(z["seed0_ds1_y"]) == len(z["seed0_ds1_fold"]) == run["train_beats"]
        assert len(z["seed0_ds2_prob"]) == run["test_beats"] and set(np.unique(z["seed0_ds1_fold"])) == {0, 1, 2}
