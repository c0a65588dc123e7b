"""The CLI as a user meets it: help, data info, and one clear line (exit 2) for each bad input."""

from __future__ import annotations

import re
import shlex
import sys

import pytest
from conftest import SMALL_RECORDS, run_cli


def test_help_lists_the_commands(tmp_path, cli_env):
    out = run_cli(["--help"], tmp_path, cli_env).stdout
    listed = {line.split()[0] for line in out.splitlines() if line.startswith("    ") and line.split()}
    assert {"search", "worker", "sync", "data", "ui", "predict", "bench-server", "export", "delete", "studies"} <= listed, out


def test_version_names_the_package_python_and_the_libraries_that_decide_results(tmp_path, cli_env):
    """A bug report needs the versions; `ecg-automl --version` was a usage error ('the following arguments are
    required: COMMAND'). The package version comes from one place, ecg_automl.__version__."""
    import platform
    from importlib import metadata

    from ecg_automl import __version__

    from ecg_automl import git_source

    out = run_cli(["--version"], tmp_path, cli_env).stdout.strip()
    assert metadata.version("ecg-automl") == __version__
    source = git_source()  # run from a checkout (as the README installs it): which commit, since the version alone
    commit = (f", git {source['commit'][:12]}{' with uncommitted changes' if source['dirty'] else ''}"  # says not
              if source else "")
    assert out.startswith(f"ecg-automl {__version__}{commit} (Python {platform.python_version()}; "), out
    for dist in ("keras", "ai-edge-litert", "optuna", "mlflow", "wfdb"):
        assert f"{dist} {metadata.version(dist)}" in out, out
    assert "no TensorFlow" not in out


def test_the_code_s_git_commit_is_read_from_its_own_checkout_only(tmp_path):
    """A study's results depend on the code that ran; ``git_source`` names its commit where ecg-automl runs from
    its own git checkout, and nothing for a copy that is not one (a wheel in a venv inside another repository)."""
    import shutil
    import subprocess
    from pathlib import Path

    import ecg_automl
    from ecg_automl import git_source

    root = Path(ecg_automl.__file__).resolve().parent.parent
    if not (root / ".git").exists():
        pytest.skip("ecg-automl does not run from a git checkout here")
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    assert git_source()["commit"] == head

    def copy_in(repo: Path, under: str, pyproject: str) -> tuple[dict | None, str]:
        """``git_source`` of a copy of the package at ``repo/under/ecg_automl``, in a git repository at ``repo``,
        and the repository's HEAD."""
        subprocess.run(["git", "init", "-q", str(repo)], check=True)
        subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q",
                        "--allow-empty", "-m", "x"], check=True)
        (repo / under).mkdir(exist_ok=True)
        shutil.copytree(root / "ecg_automl", repo / under / "ecg_automl")
        (repo / under / "pyproject.toml").write_text(pyproject)
        out = subprocess.run([sys.executable, "-c", "import ecg_automl; print(repr(ecg_automl.git_source()))"],
                             cwd=repo / under, capture_output=True, text=True, check=True).stdout.strip()
        return eval(out), subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                                         text=True, check=True).stdout.strip()

    ours = '[project]\nname = "ecg-automl"\n'
    found, head = copy_in(tmp_path / "own", ".", ours)  # a checkout of its own: its commit (untracked files
    assert found == {"commit": head, "dirty": False}  # are not changes to the code it holds)
    # its own pyproject, but the repository's root is above it: another project's repository
    assert copy_in(tmp_path / "a", "site", ours)[0] is None
    assert copy_in(tmp_path / "b", ".", '[project]\nname = "other"\n')[0] is None


def test_data_info_prints_balance_and_splits(tmp_path, cli_env):
    out = run_cli(["data", "info", "mitdb", "--records", ",".join(SMALL_RECORDS)], tmp_path, cli_env).stdout
    assert "search side (train/validation folds): 5 patients" in out
    assert "held-out test patients: 3 patients" in out
    assert "search records: 101 106 119 208 223" in out and "test records: 100 200 213" in out


def test_data_info_strips_spaces_around_record_ids(tmp_path, cli_env):
    """`--records " 100, 101"` said "records [' 100', ' 101'] are not in DS1/DS2"."""
    out = run_cli(["data", "info", "mitdb", "--records", " 100, 101 "], tmp_path, cli_env).stdout
    assert "search records: 101" in out and "test records: 100" in out
    proc = run_cli(["data", "info", "mitdb", "--records", " , "], tmp_path, cli_env, check=False)
    assert proc.returncode == 2 and "--records ' , ' names no record" in proc.stderr
    # `--records "$RECS"` with RECS unset read every record; a window of 10,000,000 samples found no beat
    for args, message in ((["--records", ""], "--records '' names no record"),
                          (["--window", "10000000"], "--window: 10000000 is out of range, expected samples per "
                                                     "prepared window, 16-20000")):
        proc = run_cli(["data", "info", "mitdb", *args], tmp_path, cli_env, check=False)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr[-2000:]


def test_data_info_accounts_for_every_annotated_beat(tmp_path, cli_env):
    """`data info` printed the beats it kept but not what the protocol left out, so its counts could not be
    checked against the annotations: kept + class Q + no full window must be every AAMI-mapped annotation."""
    import json

    import wfdb

    from conftest import DATA
    from ecg_data.mitdb import AAMI, DS1

    args = ["data", "info", "mitdb", "--records", ",".join(SMALL_RECORDS)]
    info = json.loads(run_cli([*args, "--json"], tmp_path, cli_env).stdout)
    left = info["left_out"]["beats_left_out"]
    for part in ("search", "test"):
        symbols = [s for r in SMALL_RECORDS if (r in DS1) == (part == "search")
                   for s in wfdb.rdann(str(DATA / "mitdb" / r), "atr").symbol if s in AAMI]
        assert left["class_q"][part] == sum(AAMI[s] == "Q" for s in symbols)
        assert info[part]["beats"] + left["class_q"][part] + left["no_full_window"][part] == len(symbols)
    assert sum(left["no_full_window"].values()) > 0  # every record loses its first and last beats
    assert info["left_out"]["paced_records_excluded"] == []  # --records named the records: none was excluded
    out = run_cli(args, tmp_path, cli_env).stdout
    assert "protocol: de Chazal DS1/DS2, AAMI, MLII" in out
    n = left["no_full_window"]
    assert (f"{n['search'] + n['test']} (search {n['search']}, test {n['test']}) beats too close to a record's "
            f"start or end for a full window") in out


def test_data_info_says_what_each_reader_left_out():
    """The left-out lines of PTB-XL's and the whole MIT-BIH's reader info (none for a count of 0)."""
    from ecg_automl.cli import _left_out_lines

    assert _left_out_lines({"paced_records_excluded": ["102", "104"], "excluded_no_diagnosis": 12,
                            "skipped_few_beats": {"count": 0, "min_beats": 3, "examples": []},
                            "not_in_copy": {"count": 2, "examples": [7, 9]}}) == [
        "paced records 102 104 (the AAMI protocol excludes them)",
        "12 record(s) without a diagnostic statement",
        "2 record(s) listed in the database's table but not in this copy (e.g. 7, 9)"]
    assert _left_out_lines({"excluded_no_diagnosis": 0, "no_full_window": {"count": 0, "examples": []}}) == []
    assert _left_out_lines({"beats_left_out": {"no_signal": {"search": 3, "test": 0}}}) == [
        "3 (search 3, test 0) annotated beats where the signal is flat or missing (a lead off)"]


@pytest.mark.parametrize("args, message", [
    (["search", "--study", "x", "--space", "nosuch.yaml"], "nosuch.yaml: no such space file"),
    (["search", "--study", "x", "--dataset", "nosuchdb", "--no-mlflow"], "unknown dataset 'nosuchdb'"),
    (["search", "--study", "x", "--storage", "notaurl", "--no-mlflow"], "is not a storage URL"),
    (["search", "--study", "x", "--storage", "postgresql://u:secret@127.0.0.1:1/db", "--no-mlflow"],
     "cannot open study storage postgresql://u:***@127.0.0.1:1/db"),
    (["search", "--study", "x", "--objective", "f1,speed"], "--objective takes f1 or auc"),
    (["search", "--study", "x", "--final-model", "folds", "--final-members", "3", "--no-mlflow"],
     "cannot also take 3 seeds (--final-members; final_members in Python): use one or the other"),
    (["search", "--study", "x", "--objective", "f1,latency", "--final-model", "folds", "--no-mlflow"],
     "a multi-objective study has no final model"),
    (["search", "--study", "x", "--fold-repeats", "2", "--no-mlflow"], "--fold-repeats repeats the fold ensemble"),
    (["data", "info", "mitdb", "--records", "102"], "records ['102'] are not in DS1/DS2 (paced records"),
    (["data", "info", "heartbeat-csv"], "point at them with --data-path"),  # only named the missing folder
    (["data", "info", "mitdb", "--root", "/nowhere", "--data-path", "/nowhere/mitdb"],  # --root was ignored
     "--root and --data-path both say where the data is"),
    (["--log-level", "FOO", "data", "info", "mitdb"], "argument --log-level: invalid choice: 'FOO'"),
    (["ui", "--no-mlflow"], "unrecognized arguments: --no-mlflow"),  # the UI and sync need MLflow
    (["ui", "--port", "70000"], "argument --port: must be a port number from 0 to 65535"),  # MLflow's traceback
    (["ui", "--experiment", "x"], "unrecognized arguments: --experiment x"),  # accepted, did nothing: the UI lists all
    (["sync", "--study", "x", "--no-mlflow"], "unrecognized arguments: --no-mlflow"),
    (["data", "info", "mitdb", "--fs", "10"], "--fs: 10.0 is out of range, expected a sampling rate in Hz in [50, 1000]"),
    (["data", "info", "mitdb", "--window", "12"], "--window: 12 is out of range"),
    (["data"], "`ecg-automl data` needs a subcommand: `data fetch NAME`"),
    (["worker", "--study", " ", "--storage", "sqlite:///o.db", "--trials", "1"], "argument --study: must not be empty"),
    (["sync", "--study", ""], "argument --study: must not be empty"),
    (["export", "--study", "", "--no-mlflow", "--out", "m.tflite"], "argument --study: must not be empty"),
    # an empty MLflow option (e.g. "$VAR" with VAR unset) was replaced by the default; "   " named an experiment
    (["sync", "--study", "x", "--experiment", ""], "argument --experiment: must not be empty"),
    (["search", "--study", "x", "--tracking-uri", " "], "argument --tracking-uri: must not be empty"),
    (["search", "--study", "x", "--space", ""], "argument --space: must not be empty"),  # was ".: a directory"
    (["export", "--study", "x", "--mlflow-config", "", "--out", "m.tflite"], "argument --mlflow-config: must not be empty"),
    # --no-mlflow silently ignored the MLflow options, even a config file that does not exist
    (["search", "--study", "x", "--no-mlflow", "--experiment", "foo"],
     "--experiment configures MLflow, which --no-mlflow turns off: use one or the other"),
    (["export", "--study", "x", "--no-mlflow", "--mlflow-config", "no.yaml", "--tracking-uri", "http://h:1",
      "--out", "m.tflite"], "--mlflow-config, --tracking-uri configure MLflow, which --no-mlflow turns off"),
    (["bench-server", "--max-mb", "1e-9"], "argument --max-mb: must be at least 0.001 MB, not 1e-9"),  # refused all
    # refused after the data loaded and the study storage was made, as a "model registry" error
    (["search", "--study", "x", "--tracking-uri", "htp://u:pw@127.0.0.1:9"],
     "tracking URI htp://u:***@127.0.0.1:9: MLflow has no tracking store for the scheme 'htp'"),
])
def test_bad_input_gives_one_clear_line(tmp_path, cli_env, args, message):
    proc = run_cli(args, tmp_path, cli_env, check=False)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])  # a usage or input error
    assert message in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("args, message", [
    (["--folds", "1"], "argument --folds: must be at least 2, not 1"),
    (["--trials", "-3"], "argument --trials: must be at least 0, not -3"),
    (["--timeout", "-5"], "argument --timeout: must be a finite number above 0"),
    (["--latency-budget-ms", "-1"], "argument --latency-budget-ms: must be a finite number above 0"),
    (["--max-beats", "0"], "argument --max-beats: must be at least 1"),
    (["--heartbeat", "0"], "argument --heartbeat: must be a finite number above 0"),  # 0 turned heartbeats off
    (["--heartbeat", "nan"], "argument --heartbeat: must be a finite number above 0"),  # was a traceback
    (["--heartbeat", "1e308"], "argument --heartbeat: must be at most 86400 seconds"),  # an OverflowError
    # failed in scikit-learn's splitter after the study was written, and the corrected command was refused
    (["--seed", "-1"], "argument --seed: must be a seed from 0 to 2147483647, not -1"),
    (["--seed", "99999999999"], "argument --seed: must be a seed from 0 to 2147483647"),
    (["--max-beats", "1", "--folds", "2"], "--max-beats 1 keeps 2 beat(s) of 2 patient(s) on the search side, too "
                                           "few for 2 patient-grouped folds"),
    (["--max-beats", "2", "--folds", "2", "--engine", "keras-tuner"], "--max-beats 2 keeps 2 beat(s) of "),
    # ten failed trials, then "fix the cause and run the same command again"; the fix was refused as another setting
    (["--max-beats", "5", "--folds", "2"], "--max-beats 5 keeps 5 beat(s) of 4 patient(s) (1 abnormal) on the search "
                                           "side: fold 2 of 2 would train on normal beats only; raise --max-beats"),
    (["--max-beats", "5", "--folds", "2", "--engine", "keras-tuner"], "fold 2 of 2 would train on normal beats only"),
    (["--tuner", "random"], "--tuner random chooses a KerasTuner tuner: it needs --engine keras-tuner"),
    # a traceback after the first trial, and a budget no model meets silently ignored
    (["--engine", "keras-tuner", "--objective", "f1,latency"], "the KerasTuner engine optimises --objective f1"),
    (["--engine", "keras-tuner", "--trials", "0"], "the KerasTuner engine needs --trials 1 or more"),  # ran forever
    # ignored: KerasTuner has no pruner (a bounded search, should it run)
    (["--engine", "keras-tuner", "--pruner", "hyperband", "--trials", "1", "--epochs", "1", "--no-final"],
     "--pruner hyperband chooses an Optuna pruner: it needs --engine optuna"),
    (["--engine", "keras-tuner", "--heartbeat", "5", "--trials", "1", "--epochs", "1", "--no-final"],
     "--heartbeat 5 sets the Optuna engine's trial heartbeat: the KerasTuner engine records its trials when they "
     "end, and has none"),  # silently ignored
    (["--study", "", "--trials", "0"], "argument --study: must not be empty: name the study"),
    (["--verbose", "5"], "argument --verbose: invalid choice: 5 (choose from 0, 1, 2)"),  # accepted silently  # a study named ""
    # --objective auc silently optimised F1 (the --metric default); with --metric f1 it still does not
    (["--objective", "auc", "--metric", "f1"], "--objective auc optimises ROC-AUC but --metric f1 says F1"),
    (["--objective", "f1,latency", "--metric", "auc"], "use --objective auc,latency"),
    (["--engine", "keras-tuner", "--latency-budget-ms", "0.0001"], "--latency-budget-ms and --latency-target need"),
    (["--latency-target", "http://127.0.0.1:9"], "--latency-target measures latency on a device"),
    (["--latency-budget-ms", "1", "--latency-target", "notaurl"], "'notaurl' is not a bench-server URL"),
    (["--folds", "30"], "30 folds need at least 30 patients on the search side; mitdb (--records 100,101,106,119,"),
    (["--records", "100,200"], "mitdb (--records 100,200) has no patient on the search side"),
    (["--records", " 100, 200 "], "mitdb (--records 100,200) has no patient on the search side"),  # ' 100' unknown
    # the whole search ran, then the final test was a traceback ("no held-out test patients")
    (["--records", "101,106,119"], "no held-out test patient in the data (--records 101,106,119 are all search "),
    (["--records", "101,106,119", "--engine", "keras-tuner"], "no held-out test patient in the data"),
    # the whole search ran, then its test printed F1 0 and ROC-AUC nan without a word (212: N and RBBB beats only)
    (["--records", "101,106,119,212"], "mitdb (--records 101,106,119,212): the held-out test part holds only normal "
                                       "beats (2,746 beats of 1 patient(s))"),
    (["--records", "101,106,119,212", "--engine", "keras-tuner"], "the held-out test part holds only normal beats"),
    # sqlite:///$DB with DB unset: the whole study ran in memory and was gone at exit, never resumable
    (["--storage", "sqlite:///"], "--storage sqlite:/// names no database file: SQLite keeps that study in memory"),
    (["--storage", "sqlite:///:memory:"], "--storage sqlite:///:memory: names no database file"),
    (["--storage", "sqlite:///~/o.db"], "SQLite does not expand ~; write the path out"),  # made a folder named ~
])
def test_bad_search_values_exit_2_and_leave_no_study(tmp_path, cli_env, args, message):
    """Values a search cannot run with are refused before a study exists (a corrected command then starts
    clean); before, some gave a traceback, ran nothing with exit 0, or failed every trial forever."""
    import optuna

    storage = f"sqlite:///{tmp_path / 'o.db'}"
    if "--records" not in args:
        args = [*args, "--records", ",".join(SMALL_RECORDS)]
    proc = run_cli(["search", "--study", "x", "--no-mlflow", "--storage", storage, *args], tmp_path, cli_env,
                   check=False, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert message in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "o.db").exists() or optuna.get_all_study_names(storage) == []


def test_a_search_whose_every_trial_is_over_the_latency_budget_fails(tmp_path, cli_env):
    """A budget no model met pruned every trial, printed "no completed trial: nothing to test" and exited 0: a
    scripted pipeline took a search with no model for a success, and nothing said the budget was why."""
    storage = f"sqlite:///{tmp_path / 'o.db'}"
    proc = run_cli(["search", "--study", "tight", "--no-mlflow", "--storage", storage, "--trials", "2",
                    "--latency-budget-ms", "0.0001", "--folds", "2", "--epochs", "1", "--quiet", "--records",
                    ",".join(SMALL_RECORDS)], tmp_path, cli_env, check=False, timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert re.search(r"error: study tight: every trial \(2\) was over the latency budget of 0.0001 ms \(the fastest: "
                     r"\d+\.\d{3} ms\), so there is no model to test or export.*--latency-budget-ms", proc.stderr), \
        proc.stderr[-2000:]
    assert "next:" not in proc.stdout and "Traceback" not in proc.stderr
    # a worker of that study says the same and fails as the search does (it exited 0)
    proc = run_cli(["worker", "--study", "tight", "--no-mlflow", "--storage", storage, "--trials", "2", "--quiet"],
                   tmp_path, cli_env, check=False, timeout=300)
    assert proc.returncode == 1 and "error: study tight: every trial (2) was over the latency budget" in proc.stderr, \
        proc.stderr[-2000:]


@pytest.mark.parametrize("engine", [["--engine", "keras-tuner", "--tuner", "random", "--seed", "1"], ["--seed", "2"]])
def test_a_search_with_no_model_fails_on_either_engine(tmp_path, cli_env, engine):
    """A KerasTuner search whose every trial was pruned (a space whose windows are too short for its blocks)
    printed its pruned lines and exited 0, with no closing line: the Optuna engine's exit 1 and why, on both
    (these seeds draw 2 of the 10 block counts in 11 that cannot be built)."""
    from spaces import SearchSpace

    space = tmp_path / "short.yaml"
    space.write_text(SearchSpace.load("edge").with_overrides(
        input_length=16, res_blocks={"type": "int", "low": 4, "high": 14}).to_yaml().replace("name: edge", "name: short"))
    storage = f"sqlite:///{tmp_path / 'o.db'}"
    proc = run_cli(["search", "--study", "short", "--no-mlflow", "--storage", storage, "--trials", "2",
                    "--space", str(space), "--folds", "2", "--epochs", "1", "--quiet", "--records",
                    ",".join(SMALL_RECORDS), *engine], tmp_path, cli_env, check=False, timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert ("error: study short: none of the study's 2 finished trial(s) completed, so there is no model to test "
            "or export (pruned: input_length 16 is too short for res_blocks") in proc.stderr, proc.stderr[-2000:]
    if "keras-tuner" in engine:
        assert f"keras-tuner study short: 2 trial(s) recorded (2 pruned) in {storage}; none completed" in proc.stdout
    assert "next:" not in proc.stdout and "Traceback" not in proc.stderr


@pytest.mark.parametrize("args, metric", [
    (["--objective", "auc"], "auc"), (["--objective", "auc,latency"], "auc"), (["--metric", "auc"], "auc"),
    ([], "f1"), (["--objective", "f1", "--metric", "f1@0.5"], "f1@0.5"),
])
def test_objective_auc_makes_a_study_that_optimises_roc_auc(tmp_path, cli_env, args, metric):
    """`--objective auc` was mapped to "the quality metric" and the metric stayed --metric's default, F1: the
    study optimised F1 and its Pareto table said "quality: validation f1"."""
    import optuna

    storage = f"sqlite:///{tmp_path / 'o.db'}"
    run_cli(["search", "--study", "x", "--no-mlflow", "--storage", storage, "--trials", "0", "--records",
             ",".join(SMALL_RECORDS), "--quiet", *args], tmp_path, cli_env, timeout=300)
    study = optuna.load_study(study_name="x", storage=storage)
    assert study.user_attrs["settings"]["metric"] == metric


@pytest.mark.parametrize("heartbeat", ["0", "-5", "inf"])
def test_worker_refuses_a_heartbeat_that_is_not_a_positive_number(tmp_path, cli_env, heartbeat):
    """0 silently turned Optuna's heartbeat off (a killed worker's trial then stayed RUNNING for good),
    -5 was taken as 1 s and inf was a traceback."""
    proc = run_cli(["worker", "--study", "x", "--storage", f"sqlite:///{tmp_path / 'o.db'}", "--trials", "1",
                    "--heartbeat", heartbeat], tmp_path, cli_env, check=False)
    assert proc.returncode == 2 and "argument --heartbeat: must be a finite number above 0" in proc.stderr


def test_worker_and_sync_help_say_what_each_option_is_and_its_default(tmp_path, cli_env):
    worker = " ".join(run_cli(["worker", "--help"], tmp_path, cli_env).stdout.split())
    for text in ("name of the study to join", "stop starting new trials after this many seconds",
                 "seconds between trial heartbeats (default 30)", "no progress bar", "Keras fit verbosity"):
        assert text in worker
    assert "as for search" not in worker
    sync = " ".join(run_cli(["sync", "--help"], tmp_path, cli_env).stdout.split())
    assert "Optuna RDB URL (default sqlite:///runs/optuna.db)" in sync



def test_search_and_data_info_help_state_the_defaults(tmp_path, cli_env):
    """`search --help` gave no default for --trials (20), --folds (3), --timeout or --engine, and `data info
    --help` listed its options with no word on any of them."""
    search = " ".join(run_cli(["search", "--help"], tmp_path, cli_env).stdout.split())
    for text in ("hold (default 20;", "folds per trial (default 3)", "many seconds (default: no limit)",
                 "optuna (the default"):
        assert text in search, text
    info = " ".join(run_cli(["data", "info", "--help"], tmp_path, cli_env).stdout.split())
    for text in ("mitdb, ptbdb, ptbxl or heartbeat-csv", "data root (default $ECG_AUTOML_DATA", "(default 256)",
                 "record ids to use (default: all)", "stops the command (default)", "summary as JSON"):
        assert text in info, text

def test_missing_data_root_is_named(tmp_path, cli_env):
    env = dict(cli_env, ECG_AUTOML_DATA=str(tmp_path / "no-data-here"))
    proc = run_cli(["search", "--study", "x", "--no-mlflow", "--storage", f"sqlite:///{tmp_path / 'o.db'}"],
                   tmp_path, env, check=False, timeout=300)
    assert proc.returncode == 2
    assert "no-data-here" in proc.stderr and "Traceback" not in proc.stderr


def test_malformed_space_file_names_the_key(tmp_path, cli_env):
    bad = tmp_path / "bad.yaml"
    from pathlib import Path

    default = (Path(__file__).parents[1] / "spaces" / "default.yaml").read_text()
    assert "  lstm_units: {type: int, low: 8, high: 48, log: true}\n" in default
    bad.write_text(default.replace("  lstm_units: {type: int, low: 8, high: 48, log: true}\n",
                                   "  lstm_units: {type: int, low: 8, log: true}\n"))
    proc = run_cli(["search", "--study", "x", "--space", bad, "--no-mlflow"], tmp_path, cli_env, check=False)
    assert proc.returncode == 2
    assert "params.lstm_units.high: missing" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("root_option", [False, True])
def test_data_info_on_a_missing_database_writes_nothing(tmp_path, cli_env, root_option):
    """`data info` only reads: a database not under the data root is named with its fetch command, not downloaded."""
    root = tmp_path / "root"
    root.mkdir()
    env = dict(cli_env, ECG_AUTOML_DATA=str(root))
    args = ["data", "info", "ptbdb", *(["--root", root] if root_option else [])]
    proc = run_cli(args, tmp_path, env, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    fetch = f"ecg-automl data fetch ptbdb{f' --root {root}' if root_option else ''}`"
    assert "database 'ptbdb' is not under" in proc.stderr and fetch in proc.stderr, proc.stderr
    assert "could not download" not in proc.stderr
    assert list(root.iterdir()) == []


EXPORT = ["export", "--study", "x", "--out", "m.tflite"]
PREDICT_CSV = ["predict", "m.tflite", "--csv", "b.csv"]


@pytest.mark.parametrize("args, message", [
    ([*EXPORT, "--verify-beats", "-5"], "--verify-beats: must be at least 0, not -5"),
    ([*EXPORT, "--runs", "0"], "--runs: must be at least 10 (the latency is timed in rounds of 10), not 0"),
    ([*EXPORT, "--runs", "5"], "--runs: must be at least 10"),
    ([*EXPORT, "--runs", "25"], "--runs: must be a multiple of 10 (the latency is timed in rounds of 10), not 25"),
    ([*EXPORT, "--threads", "0"], "--threads: must be at least 1, not 0"),
    (["export", "--study", "x", "--out", "x.keras"], "'x.keras' does not end in .tflite"),
    # -1 was read as a Python index: the study's last trial was exported
    ([*EXPORT, "--trial", "-1"], "--trial: takes best or a trial number: must be at least 0, not -1"),
    ([*EXPORT, "--trial", "last"], "--trial: takes best or a trial number: 'last' is not an integer"),
    ([*PREDICT_CSV, "--csv-fs", "-360"], "--csv-fs: -360.0 is out of range, expected a sampling rate in Hz in [50, 1000]"),
    ([*PREDICT_CSV, "--csv-fs", "0"], "--csv-fs: 0.0 is out of range, expected a sampling rate in Hz in [50, 1000]"),
    ([*PREDICT_CSV, "--csv-fs", "nan"], "--csv-fs: nan is out of range, expected a sampling rate in Hz in [50, 1000]"),
    (["predict", "m.tflite", "--record", "r", "--threads", "0"], "--threads: must be at least 1, not 0"),
])
def test_bad_predict_and_export_options_are_usage_errors(tmp_path, cli_env, args, message):
    """Refused by the parser (exit 2: its usage and one error line) before any model or study is opened."""
    proc = run_cli(args, tmp_path, cli_env, check=False)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and not (tmp_path / "x.keras").exists()


def test_export_help_states_the_defaults(tmp_path, cli_env):
    out = " ".join(run_cli(["export", "--help"], tmp_path, cli_env).stdout.split())
    for default in ("default int8", "default 300", "default 20000", "default 1)", "default sqlite:///runs/optuna.db",
                    "best (the final model of the study; default)"):
        assert default in out, default


@pytest.mark.parametrize("command", [["worker", "--trials", "1"], ["sync"]])
def test_a_storage_url_naming_the_mlflow_store_is_refused_untouched(tmp_path, cli_env, command):
    """``--storage sqlite:///runs/mlflow.db`` (the tracking store, not the study's): Optuna added its tables
    to MLflow's database, then failed with 'optuna 5.0.0 is no longer compatible with the table schema (set
    up by optuna 5.0.0)'."""
    import sqlite3

    import mlflow

    db = tmp_path / "mlflow.db"
    mlflow.MlflowClient(f"sqlite:///{db}").search_experiments()  # an MLflow store, as `search` leaves it
    before = {r[0] for r in sqlite3.connect(db).execute("SELECT name FROM sqlite_master WHERE type='table'")}
    proc = run_cli([command[0], "--study", "x", "--storage", f"sqlite:///{db}", *command[1:],
                    "--tracking-uri", f"sqlite:///{tmp_path / 'other.db'}"], tmp_path, cli_env, check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "is not an Optuna study storage" in proc.stderr and "an MLflow tracking store" in proc.stderr
    after = {r[0] for r in sqlite3.connect(db).execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert after == before


def test_search_trials_0_ends_with_a_summary_that_says_something(tmp_path, cli_env):
    """It ended with a bare 'study NAME: ' line; the worker command it prints said `--storage URL`, not the
    study's storage."""
    proc = run_cli(["search", "--study", "empty", "--trials", "0", "--no-final", "--no-mlflow", "--quiet",
                    "--max-beats", "600", "--records", ",".join(SMALL_RECORDS),
                    "--storage", f"sqlite:///{tmp_path / 'o.db'}"], tmp_path, cli_env)
    assert "study empty: no trial yet" in proc.stdout.splitlines()
    assert f"`ecg-automl worker --study empty --storage sqlite:///{tmp_path / 'o.db'} --trials N --no-mlflow`" in proc.stdout


def _run_without_search_extra(args, cwd, env):
    """``ecg-automl ARGS`` as on the base (Pi) install: the modules of the ``search`` extra cannot be imported."""
    import subprocess
    import sys

    blocked = ["optuna", "tensorflow", "keras", "mlflow", "sklearn"]
    code = (f"import sys; sys.modules.update(dict.fromkeys({blocked!r})); "
            f"from ecg_automl.cli import main; sys.exit(main({list(map(str, args))!r}))")
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("args", [["search", "--study", "x"], ["worker", "--study", "x", "--storage", "sqlite:///o.db",
                                  "--trials", "1"], ["sync", "--study", "x"], ["ui"],
                                  ["export", "--study", "x", "--out", "m.tflite"]])
def test_search_commands_on_the_pi_install_name_the_extra_they_need(tmp_path, cli_env, args):
    """`pip install "ecg-automl[pi]"` lists every command; the search-stack ones ended in a ModuleNotFoundError
    traceback (main imported optuna for every command but predict and bench-server). The hint named
    `pip install "ecg-automl[search]"`, which finds nothing (ecg-automl is not on PyPI): it names the checkout's."""
    proc = _run_without_search_extra(args, tmp_path, cli_env)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert f"`ecg-automl {args[0]}` needs the search toolkit" in proc.stderr
    assert ('pip install -e ".[search]" in the ecg-automl checkout (or pip install "PATH[search]", PATH its folder '
            'or .whl)') in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_data_info_runs_on_the_pi_install(tmp_path, cli_env):
    """`data` needs only the base install (wfdb, numpy, scipy); it stopped at main's `import optuna`."""
    proc = _run_without_search_extra(["data", "info", "mitdb", "--records", ",".join(SMALL_RECORDS)], tmp_path,
                                      cli_env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "search records: 101 106 119 208 223" in proc.stdout


def test_main_runs_twice_in_one_process():
    """A notebook or a script calling main() a second time failed building the parser: 'conflicting subparser:
    predict' (the TFLite commands were registered once per call)."""
    from ecg_automl.cli import main

    for _ in range(2):
        with pytest.raises(SystemExit) as exc:
            main(["nosuchcommand"])
        assert exc.value.code == 2


def test_output_into_a_closed_pipe_ends_quietly(tmp_path, cli_env):
    """`ecg-automl ... | head` whose reader stops early ended in a BrokenPipeError traceback; now exit 141
    (the shell's SIGPIPE status) and nothing on stderr about it."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "ecg_automl", "data", "info", "mitdb", "--records", "100"],
                            cwd=tmp_path, env=cli_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the command writes a line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 141, err[-2000:]
    assert "BrokenPipeError" not in err and "Traceback" not in err, err[-2000:]


def test_a_search_ends_with_the_commands_that_browse_and_export_it(capsys):
    """A new user finished the quickstart with a test report and no word on where it was or what to run next;
    the search now prints `ecg-automl ui` and the export command with the run's own storage and MLflow options
    (quoted for the shell), and nothing when no final test ran."""
    import argparse

    from ecg_automl.cli import _print_next_steps

    args = argparse.Namespace(study="my study", storage="postgresql://u:secret@db/optuna", no_mlflow=False,
                              mlflow_config=None, tracking_uri="sqlite:///t/m.db", experiment=None, dataset="mitdb")
    _print_next_steps(args, {"trial": 3})
    out = capsys.readouterr().out
    assert "ecg-automl ui --tracking-uri sqlite:///t/m.db\n" in out
    assert ("ecg-automl export --study 'my study' --storage 'postgresql://u:***@db/optuna' --tracking-uri "
            "sqlite:///t/m.db --mode int8 --out 'my study-int8.tflite'\n") in out
    assert "ecg-automl predict 'my study-int8.tflite' --record" in out
    _print_next_steps(args, None)
    assert capsys.readouterr().out == ""


def test_a_heartbeat_csv_search_points_predict_at_a_csv(capsys):
    """After a heartbeat-CSV study the next step said `predict ... --record PATH/TO/RECORD`: a record's windows are
    not the CSV rows the model learned, and predict then warned that its decisions are not what the test
    describes. The step now names --csv."""
    import argparse

    from ecg_automl.cli import _print_next_steps

    args = argparse.Namespace(study="hb", storage=None, no_mlflow=True, mlflow_config=None, tracking_uri=None,
                              experiment=None, dataset="heartbeat-csv")
    _print_next_steps(args, {"trial": 0})
    out = capsys.readouterr().out
    assert "ecg-automl predict hb-int8.tflite --csv PATH/TO/BEATS.csv [--csv-has-label]\n" in out
    assert "--record" not in out


def test_the_ui_step_a_search_prints_is_one_that_ui_takes(capsys):
    """After `search --experiment X` the search printed `ecg-automl ui --experiment X`, which ui rejects (it takes
    no --experiment), and after `--tracking-uri http://...` an `ecg-automl ui --tracking-uri http://...` that ui
    refuses (a tracking server has its own UI). The ui step now keeps only ui's options, or names the server's URL;
    the export step keeps --experiment, which export takes."""
    import argparse

    from ecg_automl.cli import _load_extras, _print_next_steps, build_parser

    _load_extras()
    parser = build_parser()
    args = argparse.Namespace(study="s", storage=None, no_mlflow=False, mlflow_config=None,
                              tracking_uri="sqlite:///t/m.db", experiment="trials", dataset="mitdb")
    _print_next_steps(args, {"trial": 3})
    lines = capsys.readouterr().out.splitlines()
    ui = next(line for line in lines if "MLflow:" in line).split(":  ", 1)[1]
    assert ui == "ecg-automl ui --tracking-uri sqlite:///t/m.db"
    parser.parse_args(shlex.split(ui)[1:])  # ui takes it (argparse would exit 2 on --experiment)
    assert any("ecg-automl export --study s --tracking-uri sqlite:///t/m.db --experiment trials " in line for line in lines)

    args.tracking_uri = "http://10.0.0.5:5000"
    _print_next_steps(args, {"trial": 3})
    out = capsys.readouterr().out
    assert "browse the trials and the final test in MLflow:  open http://10.0.0.5:5000 in a browser\n" in out
    assert "ecg-automl ui" not in out


def test_the_sync_command_after_a_tracking_outage_names_the_runs_stores(capsys):
    """After an MLflow outage a worker on PostgreSQL printed `run ecg-automl sync --study NAME`, which looks in
    sync's default store (sqlite:///runs/optuna.db) and tracking store, not the run's: it now carries the run's
    --storage (password hidden, as in the other printed commands) and MLflow options."""
    import argparse

    import optuna

    from ecg_automl.cli import _print_summary

    study = optuna.create_study(study_name="lost")
    capsys.readouterr()  # Optuna's "A new study created" line
    result = argparse.Namespace(study=study, tracking_failures=["log_metrics"], tracking_skipped=13)
    args = argparse.Namespace(storage="postgresql://ecg:secret@db/optuna", mlflow_config=None,
                              tracking_uri="http://10.0.0.5:5000", experiment="wide")
    _print_summary(result, args)
    err = capsys.readouterr().err
    assert ("warning: 1 MLflow calls failed and 13 were skipped while the tracking store was unreachable; the results "
            "are in the Optuna study: run `ecg-automl sync --study lost --storage 'postgresql://ecg:***@db/optuna' "
            "--tracking-uri http://10.0.0.5:5000 --experiment wide` when the tracking server is back\n") == err
    args = argparse.Namespace(storage="sqlite:///runs/optuna.db", mlflow_config=None, tracking_uri=None, experiment=None)
    _print_summary(result, args)
    assert "run `ecg-automl sync --study lost` when" in capsys.readouterr().err  # the defaults need no option


@pytest.mark.parametrize("argv", [
    ["search", "--study", "x"], ["worker", "--study", "x", "--storage", "sqlite:///o.db", "--trials", "1"], ["sync", "--study", "x"],
    ["data", "info", "mitdb"], ["data", "fetch", "mitdb"], ["ui"], ["export", "--study", "x", "--out", "m.tflite"],
    ["predict", "m.tflite", "--record", "100"], ["bench-server"],
])
def test_log_level_is_taken_after_the_subcommand_too(argv):
    """`ecg-automl sync --study x --log-level INFO` was "unrecognized arguments: --log-level INFO": it was taken
    only before the subcommand. Now either place; given in both, the later one wins, and left out, WARNING."""
    from ecg_automl.cli import _load_extras, build_parser

    _load_extras()
    parser = build_parser()
    assert parser.parse_args([*argv, "--log-level", "info"]).log_level == "INFO"
    assert parser.parse_args(["--log-level", "DEBUG", *argv]).log_level == "DEBUG"
    assert parser.parse_args(["--log-level", "DEBUG", *argv, "--log-level", "ERROR"]).log_level == "ERROR"
    assert parser.parse_args(argv).log_level == "WARNING"


def test_an_output_path_that_cannot_be_written_is_refused_before_any_work(tmp_path, cli_env):
    """`search --out-dir FILE` trained every trial and the final model, then model.save raised
    NotADirectoryError; `export --out FILE/m.tflite` converted, verified and timed, then out.parent.mkdir raised
    FileExistsError. Both are one line, exit 2, before the data loads: no study is made."""
    import optuna

    (tmp_path / "afile").write_text("")
    storage = f"sqlite:///{tmp_path / 'o.db'}"
    common = ["--study", "x", "--no-mlflow", "--storage", storage, "--records", ",".join(SMALL_RECORDS), "--trials", "1",
              "--folds", "2", "--epochs", "1", "--max-beats", "600", "--quiet"]
    for args, message in [
        (["search", *common, "--out-dir", "afile"], f"error: --out-dir afile cannot be written ({tmp_path / 'afile'} "
                                                     f"is a file, not a folder): name a folder that can hold the final model"),
        (["search", *common, "--out-dir", "afile/sub", "--engine", "keras-tuner"],
         "error: --out-dir afile/sub cannot be written"),
        (["export", "--study", "x", "--storage", storage, "--no-mlflow", "--out", "afile/m.tflite"],
         f"error: --out afile/m.tflite cannot be written ({tmp_path / 'afile'} is a file, not a folder)"),
    ]:
        proc = run_cli(args, tmp_path, cli_env, check=False)
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert not (tmp_path / "o.db").exists() or optuna.get_all_study_names(storage) == []
    # --trials 0 (likewise --no-final) writes nothing there: not refused for it
    proc = run_cli(["search", *common, "--out-dir", "afile", "--trials", "0"], tmp_path, cli_env)
    assert "study x: no trial yet" in proc.stdout


def test_mlflow_artifact_progress_bars_are_off_unless_asked_for(tmp_path, cli_env):
    """MLflow's 'Downloading artifacts' tqdm bars showed in export's output; $MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR
    set by the user still decides."""
    import subprocess
    import sys

    code = ("import ecg_automl.cli; from mlflow.utils.file_utils import ArtifactProgressBar as B; "
            "print(B.files('Downloading artifacts', 1).pbar is None)")
    env = {k: v for k, v in cli_env.items() if k != "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"}
    for value, off in ((None, "True"), ("true", "False")):
        if value is not None:
            env["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = value
        out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=120)
        assert out.stdout.strip() == off, out.stderr[-2000:]


def test_every_tracking_uri_option_says_what_it_overrides(monkeypatch):
    """`export --help` said --tracking-uri overrides mlflow.yaml only; like the others it overrides
    $MLFLOW_TRACKING_URI too (TrackingConfig.load)."""
    import argparse

    from ecg_automl import cli

    monkeypatch.setattr(cli, "_extra_parsers", [])
    cli._load_extras()
    sub = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    helps = {name: a.help for name, p in sub.choices.items() for a in p._actions if "--tracking-uri" in a.option_strings}
    assert {"search", "worker", "sync", "ui", "export"} <= set(helps), helps
    assert set(helps.values()) == {"MLflow tracking URI (overrides mlflow.yaml and $MLFLOW_TRACKING_URI)"}, helps


def test_mlflow_config_env_and_flag_decide_the_tracking_store_in_that_order(tmp_path, monkeypatch):
    """--mlflow-config's values are used, $MLFLOW_TRACKING_URI overrides the file's URI and --tracking-uri both (no
    test read a config file's values or the variable: ignoring either passed the suite)."""
    from ecg_automl import cli

    conf = tmp_path / "team.yaml"
    conf.write_text(f"tracking_uri: sqlite:///{tmp_path / 'file.db'}\nexperiment_name: cardio\n"
                    f"artifact_location: {tmp_path / 'art'}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr(cli, "_extra_parsers", [])

    def config(*extra):
        return cli._tracking(cli.build_parser().parse_args(["sync", "--study", "s", "--mlflow-config", str(conf),
                                                            *extra]))

    got = config()
    assert (got.tracking_uri, got.experiment_name, got.artifact_location) == (
        f"sqlite:///{tmp_path / 'file.db'}", "cardio", str(tmp_path / "art"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'env.db'}")
    assert config().tracking_uri == f"sqlite:///{tmp_path / 'env.db'}" and config().experiment_name == "cardio"
    got = config("--tracking-uri", str(tmp_path / "flag.db"), "--experiment", "other")
    assert (got.tracking_uri, got.experiment_name) == (f"sqlite:///{tmp_path / 'flag.db'}", "other")


def test_ctrl_c_while_the_toolkit_loads_is_one_line_not_a_traceback(monkeypatch, capsys):
    """Ctrl-C in the first second (while optuna and the subcommands were imported) printed a 50-line
    KeyboardInterrupt traceback; later it printed 'interrupted', exit 130."""
    from ecg_automl import cli

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_load_extras", interrupted)
    assert cli.main(["data", "info", "mitdb"]) == 130
    assert capsys.readouterr().err == "interrupted\n"
