"""Smoke test of the benchmark scripts on quality, data and the Pi: each runs in --quick mode on real MIT-BIH beats and
writes a complete JSON result and a PNG plot (about 2-3 minutes on 2 busy cores); the search and edge scripts' are in
test_benchmarks_search_smoke.py and test_benchmarks_edge_smoke.py."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys

from conftest import ROOT
from benchsmoke import RATES, is_rate, run_quick


def test_quality_and_pipeline_cost_quick(tmp_path, cli_env):
    q = run_quick("quality.py", tmp_path, cli_env)
    assert q["settings"]["seeds"] == [0] and q["settings"]["epochs"] == 1
    res = q["results"]
    for arm in ("inter_patient_keras", "inter_patient_int8", "beat_level_split"):
        med = res[arm]["median"]
        for k in RATES:
            assert is_rate(med[k]), (arm, k, med[k])
        assert is_rate(med["threshold"])
        assert {"flagged_N", "flagged_S", "flagged_V"} <= set(med) and all(is_rate(med[f"flagged_{c}"]) for c in "NSV")
        seed0 = res[arm]["per_seed"][0]
        cm = seed0["confusion_matrix"]
        assert cm["tn"] + cm["fp"] + cm["fn"] + cm["tp"] == seed0["test_beats"] == seed0["n"]
    ip = res["inter_patient_keras"]
    # ~4,000 DS1 beats; a DS2 subsample of ~5,000 beats that keeps every DS2 patient
    assert ip["train_beats"] <= 4100 and 5000 <= ip["test_beats"] < 5100 and q["settings"]["ds2_beats"] == 5000
    assert ip["per_seed"][0]["test_beats_total"] > 40_000 and ip["per_seed"][0]["test_patients"] == 22
    assert ip["per_seed"][0]["oof"]["folds"] == 3
    # two members averaged, as in full mode (3): each scored alone too, with seeds no other benchmark seed uses
    assert ip["per_seed"][0]["member_seeds"] == [0, 1] and len(ip["per_seed"][0]["members_keras"]) == 2
    assert is_rate(res["int8_vs_keras"]["decision_agreement"])
    leak = res["beat_level_split"]["leak"]
    assert leak["patients_on_both_sides"] > 0 and leak["check_no_leak_failed"] is True
    assert "context_published_not_measured" in q and "de Chazal" in q["context_published_not_measured"]["inter_patient_de_chazal_style"]

    p = run_quick("pipeline_cost.py", tmp_path, cli_env)
    s = p["summary"]
    assert 0 < s["data_prep_warm_seconds"] < s["data_prep_cold_seconds"]
    assert p["data_prep"][0]["cold_cache_hit"] is False and p["data_prep"][0]["warm_cache_hit"] is True
    assert s["steady_beats_per_s"] > 0 and s["first_epoch_beats_per_s"] > 0
    assert s["gate_seconds"] > 0 and s["gate_pi4_estimate_ms"] > 0
    for k in ("trial_training_share", "trial_validation_share", "trial_other_share", "pooled_other_share",
              "gate_share_if_enabled"):
        assert is_rate(s[k]), (k, s[k])
    trials = p["study"][0]["trials"]
    assert len(trials) == 2 and all(t["state"] == "COMPLETE" and t["folds"] == 2 for t in trials)
    for t in trials:  # the folds' validation passes are booked apart from training
        assert 0 < t["validation_seconds"] < t["training_seconds"] < t["total_seconds"]
        assert math.isclose(t["training_seconds"] + t["validation_seconds"] + t["other_seconds"], t["total_seconds"])


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

    r = run_quick("ptbxl_records.py", tmp_path, cli_env)
    s = r["settings"]
    assert s["seeds"] == [0] and s["epochs"] == 1 and s["folds"] == 2 and s["aggregate"] == "mean"
    assert r["leak_check"]["no_leak"] is True and r["leak_check"]["patients_in_both_parts"] == 0
    assert r["data"]["strat_folds"] == {"search": list(range(1, 10)), "test": [10]}
    assert r["data"]["channels"] == 12 and r["data"]["rr_features_per_beat"] >= 1
    for level in ("record", "beat"):
        med = r["results"][level]["median"]
        for k in RATES:
            assert is_rate(med[k]), (level, k, med[k])
        assert is_rate(med["threshold"])
    seed0 = r["results"]["per_seed"][0]
    folds = pd.read_csv(table, index_col="ecg_id")["strat_fold"]
    test_ids = [int(t["ecg_id"]) for t in seed0["test_records"]]
    assert len(set(test_ids)) == len(test_ids) == seed0["test"]["records"] == r["data"]["test"]["records"] > 30
    assert (folds.loc[test_ids] == 10).all()  # test records are fold 10 only, straight from the CSV
    assert sum(t["beats"] for t in seed0["test_records"]) == seed0["test"]["beats"] == seed0["beat"]["n"]
    assert sum(t["y"] for t in seed0["test_records"]) == seed0["test"]["abnormal_records"]
    assert all(is_rate(t["prob"]) for t in seed0["test_records"])
    for level, n in (("record", seed0["test"]["records"]), ("beat", seed0["test"]["beats"])):
        cm = seed0[level]["confusion_matrix"]
        assert cm["tn"] + cm["fp"] + cm["fn"] + cm["tp"] == seed0[level]["n"] == n
        assert cm["fn"] + cm["tp"] == seed0[level]["n_abnormal"]
    assert seed0["train"]["records"] + seed0["test"]["records"] == r["data"]["search"]["records"] + r["data"]["test"]["records"]
    assert seed0["train"]["records"] > 300 and seed0["oof"]["folds"] == 2 and seed0["oof"]["oof_records"] == seed0["train"]["records"]
    ctx = r["context_published_not_measured"]
    assert "not measured" in ctx["note"].lower() or "not results" in ctx["note"].lower()
    assert is_rate(ctx["accuracy"]) and is_rate(ctx["f1"])


def test_rr_features_quick(tmp_path, cli_env):
    r = run_quick("rr_features.py", tmp_path, cli_env)
    assert r["settings"]["seeds"] == [0] and r["settings"]["rounds"] == 50
    groups = r["settings"]["groups"]
    assert groups["nine (pipeline version 5)"] == list(range(9)) and groups["all fourteen (pipeline version 6)"] == list(range(14))
    for name in groups:
        med = r["medians"][name]
        assert all(is_rate(med[k]) and med[k] > 0.8 for k in ("ds1_oof_roc_auc", "ds2_roc_auc", "ds2_roc_auc_N_vs_V")), (name, med)
        assert is_rate(med["ds2_roc_auc_N_vs_S"]) and is_rate(med["ds2_roc_auc_N_vs_F"])  # F beats: near chance from rhythm
        assert len(r["per_seed"][name]) == 1


def test_csv_rows_quick(tmp_path, cli_env):
    """csv_rows.py makes a model through the CLI (search, export) and classifies 213 as a record and as CSV rows."""
    r = run_quick("csv_rows.py", tmp_path, cli_env, "--work-dir", str(tmp_path / "work"))
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


def test_bad_arguments_are_one_usage_line(tmp_path, monkeypatch):
    """Each script's ``main(argv)`` in this process (a subprocess each took 36 s of CI for 33 refusals): the
    refusal is an exit of 2 whose last stderr line names the problem; any other exception fails the test with
    its traceback, as it would have printed one."""
    import contextlib
    import importlib
    import io

    import pytest

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    (tmp_path / "malformed.json").write_text("{bad")
    (tmp_path / "file").write_text("")
    paths = {"missing": tmp_path / "missing.json", "malformed": tmp_path / "malformed.json",
             "unwritable": tmp_path / "file" / "out"}  # below a plain file: cannot be created, even by root
    failures = []
    for script, extra, expected in BAD_ARGS:
        argv = [a.format(**paths) for a in extra]
        if script != "calibrate_pi.py":  # it has neither
            argv = ["--quick", *argv] if "--out-dir" in argv else ["--quick", *argv, "--out-dir", str(tmp_path / "out")]
        main = importlib.import_module(script.removesuffix(".py")).main
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exc:
                code = exc.code
        lines = err.getvalue().strip().splitlines()
        if code != 2 or not lines or expected not in lines[-1]:
            failures.append(f"{script} {' '.join(argv)}: exit {code}, {err.getvalue()[-600:]}")
    if failures:
        pytest.fail("\n".join(failures))


FULL_RUN_TIME = {"quality.py": "2 h 15 min", "fold_ensemble.py": "28 min", "edge.py": "12 min",
                 "search_efficiency.py": "50 min", "pipeline_cost.py": "1,310 s", "ptbxl_records.py": "462-635 s",
                 "rr_features.py": "about 5 min", "csv_rows.py": "116 s", "pi_install.py": "102 s",
                 "ensemble_latency.py": "97 s"}  # as the result files' wall_seconds / docs/RESULTS.md say


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
