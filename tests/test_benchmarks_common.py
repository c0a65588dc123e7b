"""The benchmarks' shared entry point and progress file (benchmarks/_common.py), without training: an interrupted
run keeps the seeds it finished and says where, its engine processes do not outlive it, missing data is one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import ROOT

SEED_LOOP = """
import logging, sys, time
from pathlib import Path
sys.path.insert(0, {bench!r})
import _common as C

def one(seed):
    if seed == {slow}:
        time.sleep(120)  # interrupted here
    return {{"seed": seed, "f1": 0.5}}

def main():
    logging.basicConfig(level=logging.INFO)  # as C.start sets it up
    C.seed_loop([0, 1, 2], one, Path({partial!r}), {{"benchmark": "toy"}}, time.perf_counter())
    return 0

C.run(main)
"""


def _start(code: str, env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for(path: Path, proc: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"{path} never appeared: {proc.communicate()}")
        time.sleep(0.1)


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_interrupt_keeps_the_finished_seeds_and_names_the_file(tmp_path, cli_env, sig, code):
    partial = tmp_path / "toy_full.partial.json"
    proc = _start(SEED_LOOP.format(bench=str(ROOT / "benchmarks"), slow=1, partial=str(partial)), cli_env)
    _wait_for(partial, proc)
    time.sleep(0.3)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    assert "Traceback" not in err and err.strip().splitlines()[-1].endswith(f"interrupted; the work finished so far is "
                                                                             f"kept in {partial}")
    doc = json.loads(partial.read_text())
    assert doc["benchmark"] == "toy" and doc["runs"] == [{"seed": 0, "f1": 0.5}]
    assert doc["partial"]["done"] == 1 and doc["partial"]["of"] == 3
    assert "seed 1 (2 of 3)" in err  # progress: which seed of how many


def test_interrupt_before_any_seed_says_nothing_was_kept(tmp_path, cli_env):
    partial = tmp_path / "toy_full.partial.json"
    proc = _start(SEED_LOOP.format(bench=str(ROOT / "benchmarks"), slow=0, partial=str(partial)), cli_env)
    deadline = time.monotonic() + 60
    out = ""
    while "seed 0 (1 of 3)" not in out and time.monotonic() < deadline:  # the loop has started
        out += proc.stderr.readline()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143 and not partial.exists()
    assert (out + err).strip().splitlines()[-1].endswith("interrupted; nothing had finished, nothing was written")


def test_missing_data_is_one_line_exit_2(tmp_path, cli_env):
    env = {**cli_env, "ECG_AUTOML_DATA": str(tmp_path / "empty")}
    (tmp_path / "empty").mkdir()
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "ptbxl_records.py"), "--quick", "--out-dir",
                           str(tmp_path / "out")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert last.startswith("ptbxl_records.py: error: PTB-XL data not found") and "ECG_AUTOML_DATA" in last


def test_search_efficiency_engines_do_not_outlive_an_interrupted_run(tmp_path, cli_env):
    """Its engine children run in their own sessions until killed: a SIGTERM to the benchmark must kill them."""
    sleeper = tmp_path / "engine.py"
    sleeper.write_text("import os, pathlib, sys, time\n"
                       f"pathlib.Path({str(tmp_path / 'pid')!r}).write_text(str(os.getpid()))\n"
                       "time.sleep(600)\n")
    code = f"""
    import sys
    from pathlib import Path
    sys.path.insert(0, {str(ROOT / 'benchmarks')!r})
    import _common as C
    import search_efficiency as SE

    SE.__file__ = {str(sleeper)!r}  # the 'engine' it spawns: a process that sleeps until killed
    args = SE.parse_args(["--quick", "--out-dir", {str(tmp_path / 'out')!r}])
    C.run(lambda: SE._spawn(args, "optuna", 0, Path({str(tmp_path)!r}), 60.0) and 0)
    """
    proc = _start(code, cli_env)
    _wait_for(tmp_path / "pid", proc)
    pid = int((tmp_path / "pid").read_text())
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == 143
    time.sleep(0.5)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return
    os.kill(pid, signal.SIGKILL)
    pytest.fail("the engine process outlived the interrupted benchmark")


def test_an_engine_child_exits_when_its_benchmark_was_killed(tmp_path, cli_env):
    """SIGKILL (a test's timeout, the OOM killer) leaves the benchmark no finally to kill its engines: each engine
    child (C.exit_when_orphaned, as search_efficiency's _run_one starts) then stops once its parent is gone."""
    child = f"""
    import os, sys, time
    sys.path.insert(0, {str(ROOT / 'benchmarks')!r})
    import _common as C
    C.exit_when_orphaned(os.getppid(), poll_s=0.1)
    print(os.getpid(), flush=True)
    time.sleep(600)  # an engine that runs until killed
    """
    benchmark = f"""
    import subprocess, sys, time
    p = subprocess.Popen([sys.executable, "-c", {textwrap.dedent(child)!r}], stdout=subprocess.PIPE, text=True,
                         start_new_session=True)
    print(p.stdout.readline().strip(), flush=True)
    time.sleep(600)
    """
    proc = _start(benchmark, cli_env)
    pid = int(proc.stdout.readline())
    proc.kill()
    proc.wait(timeout=30)  # not communicate(): the child holds the pipe open for as long as it lives
    proc.stdout.close()
    proc.stderr.close()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)
    pytest.fail("the engine child outlived its SIGKILLed benchmark by 20 s")


@pytest.mark.parametrize("script", ["rr_features.py", "quality.py"])
def test_a_rerun_says_at_its_start_which_result_it_will_replace(tmp_path, cli_env, script):
    stem = script.removesuffix(".py")
    old = tmp_path / f"{stem}_quick.json"
    old.write_text(json.dumps({"started_utc": "2026-01-02T03:04:05+00:00", "source": {"git_commit": "abcdef0123456789"}}))
    proc = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / script), "--quick", "--out-dir", str(tmp_path)],
                            cwd=ROOT, env=cli_env, text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline, seen = time.monotonic() + 120, ""
    while "will be replaced" not in seen and time.monotonic() < deadline and proc.poll() is None:
        seen += proc.stderr.readline()
    proc.send_signal(signal.SIGTERM)  # no need to train: the warning comes before the data is loaded
    proc.communicate(timeout=60)
    assert (f"{old} (started 2026-01-02T03:04:05+00:00, commit abcdef0123) will be replaced when this run ends; "
            "give --out-dir to keep it") in seen
    assert json.loads(old.read_text())["started_utc"] == "2026-01-02T03:04:05+00:00"  # interrupted: not replaced


def test_calibrate_pi_json_records_machine_versions_command_and_commit(tmp_path, monkeypatch):
    """Its --json file (what ECG_AUTOML_PI_CALIBRATION reads) says where and with what it was measured, as the
    other benchmarks' result files do; measuring itself is replaced by fixed host values."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import calibrate_pi
    from ecg_automl.tflite.pi_estimate import CALIBRATION, _load_host_calibration

    monkeypatch.setattr(calibrate_pi, "get_models", lambda points, cache: {})
    stats = {calibrate_pi.model_key(p): {"host_ms": 1.0 + i / 10, "host_median_ms": 1.1 + i / 10, "load1": [0.5]}
             for i, p in enumerate(CALIBRATION)}
    monkeypatch.setattr(calibrate_pi, "measure_host", lambda *a, **k: stats)
    out = tmp_path / "new" / "calib.json"  # its folder is created when written
    monkeypatch.setattr(sys, "argv", ["calibrate_pi.py", "--json", str(out)])
    assert calibrate_pi.main(["--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert "calibrate_pi.py" in doc["command"] and doc["machine"]["lscpu_model_name"] and doc["versions"]["tensorflow"]
    assert "git_commit" in doc["source"] and doc["host_cpu"] and len(doc["points"]) == len(CALIBRATION)
    if Path("/proc/cpuinfo").exists():  # hosts lscpu names alike ("Intel(R) Xeon(R) Processor") timed otherwise
        assert {"vendor_id", "model", "stepping"} <= set(doc["machine"]["cpu_signature"])
    assert _load_host_calibration(out)[0] == doc["host_cpu"]  # still a file the Pi estimate reads


_SCRIPTS = ["csv_rows", "edge", "ensemble_latency", "fold_ensemble", "pi_install", "pipeline_cost", "ptbxl_records",
            "quality", "rr_features", "search_efficiency", "threshold_rules"]


@pytest.mark.parametrize("script,argv,mode", [
    *[(s, [], "full") for s in _SCRIPTS],
    ("fold_ensemble", ["--folds", "3", "--seeds", "3", "-v"], "full"),  # the full mode's own values
    ("fold_ensemble", ["--folds", "5", "--repeats", "2"], "full_folds5_repeats2"),
    ("fold_ensemble", ["--repeats", "2", "--folds", "5"], "full_folds5_repeats2"),  # in the parser's order
    ("fold_ensemble", ["--quick", "--folds", "5"], "quick"),
    ("fold_ensemble", ["--folds", "5", "--repeats", "2", "--reshuffle-repeats"], "full_folds5_repeats2_reshuffle-repeats"),
    ("pipeline_cost", ["--repeats", "1"], "full_repeats1"),
    ("threshold_rules", ["--seed", "3", "--folds", "5"], "full"),  # the full mode's own values
    ("threshold_rules", ["--seed", "0"], "full_seed0"),
    ("ensemble_latency", ["--members", "1,5"], "full_members-1,5"),
    ("search_efficiency", ["--seeds", "0", "1", "2"], "full"),
    # --optuna-workers 2 also sets --optuna-tf-threads 1, which the user did not give: not in the name
    ("search_efficiency", ["--budget", "600", "--optuna-workers", "2"], "full_budget600_optuna-workers2"),
    ("search_efficiency", ["--metric", "f1@0.5"], "full_metric-f1-0.5"),
    # a URL (it may hold a password) is a digest in the name
    ("edge", ["--study", "s", "--storage", "postgresql://bob:hunter2@db/optuna"], "full_study-s_storage-e06051c4"),
])
def test_a_full_run_with_other_options_writes_files_of_its_own(tmp_path, monkeypatch, script, argv, mode):
    """`fold_ensemble.py --folds 5` wrote fold_ensemble_full.json, replacing the published 3-fold run's figures
    (with a warning at its start): a full run whose options change what it measures now has a mode, and so files,
    of its own. Where it writes (--out-dir) is no part of that name."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import importlib

    module = importlib.import_module(script)
    args = module.parse_args([*argv, "--out-dir", str(tmp_path)])
    assert args.mode == mode


@pytest.mark.parametrize("given,recorded", [(None, "0"), ("1", "1")])
def test_a_result_file_records_whether_training_used_onednn(tmp_path, cli_env, given, recorded):
    """Benchmarks train as the CLI does, oneDNN off (other floats: the 5x2 fold ensemble of commit 063aede, with
    it on, is not repeated by the same command today), and the result file says which; a value set is kept."""
    env = {k: v for k, v in cli_env.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if given is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = given
    code = ("import os, sys; sys.path.insert(0, 'benchmarks'); import _common as C; head = C.header('x', 'quick'); "
            "print(head['env']['TF_ENABLE_ONEDNN_OPTS'], os.environ['TF_ENABLE_ONEDNN_OPTS'])")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == [recorded, recorded]


def test_fold_ensemble_reshuffled_repeats_split_the_patients_otherwise(monkeypatch):
    """--reshuffle-repeats: the first repeat keeps the search's StratifiedGroupKFold, later ones draw random
    patient folds with their own seeds; without it fit_fold_models chooses (None)."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import fold_ensemble
    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

    assert fold_ensemble.splitters(5, 1, 2, reshuffle=False) is None
    first, second, third = fold_ensemble.splitters(5, 1, 3, reshuffle=True)
    assert isinstance(first, StratifiedGroupKFold) and first.random_state == 1 and first.n_splits == 5
    assert all(isinstance(s, GroupKFold) and s.shuffle and s.n_splits == 5 for s in (second, third))
    assert (second.random_state, third.random_state) == (1 + 7919, 1 + 2 * 7919)


def _threshold_rules(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import threshold_rules

    return threshold_rules


def test_threshold_rules_f1_curve_is_sklearns_f1(monkeypatch):
    """The curve rules read F1 off one sort of the probabilities: it must be scikit-learn's F1 at each threshold,
    ties and the extremes included."""
    import numpy as np
    from sklearn.metrics import f1_score

    TR = _threshold_rules(monkeypatch)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    p = np.round(np.clip(0.3 * y + rng.random(500) * 0.7, 0, 1), 2)  # rounded: many ties
    grid = np.array([0.0, 0.05, 0.3, 0.5, 0.51, 0.77, 0.99, 1.0])
    assert np.allclose(TR._f1_at(y, p, grid), [f1_score(y, p >= t, zero_division=0) for t in grid])


def test_threshold_rules_never_see_the_held_fold(monkeypatch):
    """Leave one fold out: the rule is given only the other folds' beats, and the held fold is classified at the
    threshold it chose from them, so the DS1 figure is one of transfer to unseen patients."""
    import numpy as np

    TR = _threshold_rules(monkeypatch)
    folds = np.repeat([0, 1, 2, 3], 50)
    y = np.tile([0, 1], 100)
    p = np.where(y == 1, 0.6, 0.4) + folds * 0.01  # fold k's classes part at 0.5 + k/100
    seen = []

    def rule(yy, pp, ff):
        seen.append(sorted(set(ff.tolist())))
        return 0.5 + float(ff.max()) / 100  # a threshold that depends on which folds it was given
    r = TR.leave_one_fold_out(rule, y, p, folds)
    assert seen == [[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]]
    assert r["thresholds"] == [0.53, 0.53, 0.53, 0.52]
    # folds 0-2 are parted cleanly at 0.53 (their abnormal beats sit at 0.6-0.62); fold 3 too at 0.52
    assert r["fold_f1"] == [1.0, 1.0, 1.0, 1.0] and r["f1"] == 1.0
    bad = TR.leave_one_fold_out(lambda yy, pp, ff: 0.65, y, p, folds)  # over every abnormal beat but fold 3's
    assert bad["fold_f1"][:3] == [0.0, 0.0, 0.0] and bad["f1"] < 0.5


def test_threshold_rules_plateau_middle_is_the_centre_of_the_flat_top(monkeypatch):
    """The plateau rule takes the middle of the thresholds within 0.01 of the best mean-over-folds F1, not the
    single best point, so one noisy peak at the plateau's edge does not carry it there."""
    import numpy as np

    TR = _threshold_rules(monkeypatch)
    curve = np.zeros(len(TR.GRID))
    curve[100:201] = 0.80  # a flat top from grid point 100 to 200 ...
    curve[200] = 0.805     # ... whose best point is at its edge
    monkeypatch.setattr(TR, "_fold_curves", lambda y, p, folds: np.vstack([curve, curve]))
    assert TR._mean_curve_best(None, None, None) == TR.GRID[200]
    assert TR._mean_curve_plateau_middle(None, None, None) == TR.GRID[150]


def test_a_variant_name_stays_short_and_stable(tmp_path, monkeypatch):
    """A long --config path would make a file name longer than file systems take: it is cut and keyed by a digest."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import fold_ensemble

    config = tmp_path / ("a_very_long_config_name_" * 6 + ".json")
    config.write_text("{}")
    modes = {fold_ensemble.parse_args(["--config", str(config), "--folds", str(k)]).mode for k in (5, 5, 6)}
    assert len(modes) == 2 and all(m.startswith("full_config-a-very-long") and len(m) <= 80 for m in modes), modes


@pytest.mark.parametrize("script", ["edge", "search_efficiency"])
def test_a_bad_space_or_work_dir_is_a_usage_error_before_any_folder_is_made(tmp_path, cli_env, script):
    """--space /missing.yaml was a SpaceError traceback (edge.py had made its work folder by then); a --work-dir
    under a file a NotADirectoryError traceback."""
    (tmp_path / "afile").write_text("x")
    out = tmp_path / "out"
    for args, message in [(["--space", str(tmp_path / "missing.yaml")], "missing.yaml"),
                          (["--work-dir", str(tmp_path / "afile" / "w")], "is not a folder")]:
        proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"{script}.py"), "--quick", "--out-dir",
                               str(out), *args], cwd=tmp_path, env=cli_env, capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert message in proc.stderr.strip().splitlines()[-1]
        assert not out.exists()


def test_the_inter_patient_guard_allows_only_the_overlap_of_de_chazal_s_split(monkeypatch):
    """With 201 and 202 one patient id (201+202), quality.py and fold_ensemble.py's DS1/DS2 guard refused the
    default data; any other patient on both sides is still refused."""
    import numpy as np

    from ecg_data import PatientLeakError, load_dataset

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import _common as C

    data = load_dataset("mitdb", records=["201", "202", "101", "100"])
    train, test = data.search_part(), data.test_part()
    C.check_inter_patient(train, test)
    leaked = test.subset(np.arange(len(test)))
    leaked.groups[:5] = "101"
    with pytest.raises(PatientLeakError, match="101"):
        C.check_inter_patient(train, leaked)


def test_threshold_rules_saves_a_seeds_predictions_into_a_new_out_dir(tmp_path, monkeypatch):
    """--out-dir is checked to be creatable, not created: the predictions written after the first seed must
    create it (it was a FileNotFoundError that threw away the seed's training)."""
    import numpy as np

    TR = _threshold_rules(monkeypatch)
    import ecg_data

    class Done(Exception):
        pass

    monkeypatch.setattr(ecg_data, "load_dataset", lambda *a, **k: type("D", (), {"summary": lambda self: {}})())
    monkeypatch.setattr(TR, "one_seed", lambda config, data, seed, folds, max_beats, ds2_beats: ({"seed": seed},
                                                                                      {f"seed{seed}": np.zeros(3)}))
    monkeypatch.setattr(TR, "summarise", lambda runs: (_ for _ in ()).throw(Done()))
    out = tmp_path / "new" / "sub"
    with pytest.raises(Done):
        TR.main(["--quick", "--out-dir", str(out)])
    assert np.load(out / "threshold_rules_quick_predictions.npz")["seed0"].shape == (3,)


@pytest.mark.parametrize("path", sorted((ROOT / "benchmarks" / "results").glob("search_efficiency_full*.json")),
                         ids=lambda p: p.stem)
def test_published_search_efficiency_files_hold_what_the_current_analysis_computes(path, monkeypatch):
    """A change to the analysis (the target's rounding, say) must be followed by --reanalyse of every published
    run: three files kept a target rounded up past the weakest engine's best, so it 'never reached' its own median."""
    import copy

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import search_efficiency as SE

    stored = json.loads(path.read_text())
    fresh = json.loads(json.dumps(SE.analyse(copy.deepcopy(stored)), default=list))
    for key in ("settings", "per_seed", "medians", "optuna_vs_baselines", "optuna_vs_baselines_deployable"):
        assert fresh.get(key) == stored.get(key), f"{path.name}: {key} is stale; run search_efficiency.py --reanalyse"


def test_quality_seeds_share_no_ensemble_member(monkeypatch):
    """fit_final trains members first, first + 1, ...: with first = the benchmark seed, seeds 0, 1, 2 of 3 members
    averaged {0, 1, 2}, {1, 2, 3}, {2, 3, 4}, so the 'repeats' were not independent."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import quality

    for members in (1, 2, 3, 5):
        used = [quality.member_seed(s, members) + i for s in range(6) for i in range(members)]
        assert len(set(used)) == len(used), members
    assert quality.member_seed(0, 3) == 0  # seed 0 keeps its members (the published run's seed 0)


def test_median_of_keeps_a_key_the_first_seed_lacks(monkeypatch, caplog):
    """A key whose first seed held None (or lacked it) was dropped from the medians altogether."""
    import logging

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import _common as C

    with caplog.at_level(logging.INFO, logger="benchmarks"):
        med = C.median_of([{"a": None, "b": 1.0}, {"a": 0.5, "b": 2.0, "c": {"d": 3.0}}, {"a": 0.7, "b": float("nan")}])
    assert med == {"a": 0.6, "b": 1.5, "c": {"d": 3.0}}
    assert "median of a over 2 of 3 seeds" in caplog.text and "median of c.d over 1 of 3 seeds" in caplog.text


def test_an_engine_slower_to_start_than_the_allowance_still_gets_its_whole_budget(tmp_path, monkeypatch):
    """The deadline was spawn + budget + allowance: a child whose imports and data took longer than the allowance
    was killed before its budget was spent, without a word. The budget now counts from the child's own clock."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import search_efficiency as SE

    child = tmp_path / "engine.py"
    child.write_text(textwrap.dedent("""
        import json, sys, time
        from pathlib import Path
        a = {sys.argv[i]: sys.argv[i + 1] for i in range(len(sys.argv) - 1) if sys.argv[i].startswith("--")}
        time.sleep(3)  # imports and data: longer than the allowance
        t0 = time.time()
        (Path(a["--work"]) / "clock-0").write_text(repr(t0))
        time.sleep(2.5)
        with open(a["--trials-file"], "a") as fh:
            fh.write(json.dumps({"trial": 0, "state": "complete", "value": 0.5, "seconds": time.time() - t0}) + "\\n")
        time.sleep(600)
    """))
    monkeypatch.setattr(SE, "__file__", str(child))
    args = SE.parse_args(["--quick", "--out-dir", str(tmp_path / "out"), "--startup-allowance", "1"])
    run = SE._spawn(args, "optuna", 0, tmp_path, 3.0)
    assert [r["trial"] for r in run["trials"]] == [0] and 2.9 < run["startup_seconds"] < 6
