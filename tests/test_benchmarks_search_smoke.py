"""Smoke test of the search-efficiency benchmark scripts (search_efficiency.py and its pruner-signal, sampler-surrogate
and worker-throughput studies) in --quick mode."""

from __future__ import annotations

import json
import math
import subprocess
import sys

from benchsmoke import VERSIONS, is_rate, run_quick
from conftest import ROOT


def test_search_efficiency_quick(tmp_path, cli_env):
    # the driver as two worker processes on one study, KerasTuner as a chief oracle and two tuner processes
    # (the one-worker runs are the same code minus the start barrier)
    r = run_quick("search_efficiency.py", tmp_path, cli_env, "--optuna-workers", "2", "--kt-workers", "2",
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
        assert values == sorted(values) and all(is_rate(v) for v in values)  # best-so-far never drops
        if s["best_f1"] is not None:
            assert s["best_f1"] == max(t["value"] for run in r["runs"] if run["engine"] == engine
                                       for t in run["trials"] if t["state"] == "complete")
    assert r["medians"]["optuna"]["runs"] == 1 and is_rate(st["target_f1"])
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
